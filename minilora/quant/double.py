"""Double quantisation: quantise the quantisation constants (QLoRA §3 "Double Quantization").

The first level stores one float32 absmax c₂ per 64 weights: 32/64 = 0.5 bits/param. Double
quantisation subtracts their mean and stores them in 8 bits, in blocks of 256 with one
float32 second-level absmax each:

    c₂ − mean(c₂)  →  8-bit codes (blocks of 256)  +  float32 c₁ per block  +  the mean
    cost: 8/64 + 32/(64·256) ≈ 0.127 bits/param  (saves 0.373)

bitsandbytes ships the signed 8-bit *dynamic* map for the codes; the paper's text says
"8-bit Floats", so FP8 E4M3 is offered as the alternative (``levels="fp8_e4m3"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .codes import absmax_codes, check_blocksize, decode_blocks, pad_to_blocks
from .levels import as_levels, dynamic_map, fp8_e4m3_levels

SECOND_LEVEL_TABLES = {"dynamic": dynamic_map, "fp8_e4m3": fp8_e4m3_levels}


@dataclass(frozen=True)
class DoubleQuantizedAbsmax:
    """First-level absmax constants stored in 8 bits.

    ``codes`` (uint8, one per first-level block), ``scale`` (float32 absmax of each block of
    ``blocksize`` centred constants), ``offset`` (float32 scalar, their mean), ``levels``
    (the 8-bit table). Matches bitsandbytes' ``QuantState.absmax`` / ``.state2.absmax`` /
    ``.offset`` / ``.state2.code``.
    """

    codes: torch.Tensor
    scale: torch.Tensor
    offset: torch.Tensor
    levels: torch.Tensor
    blocksize: int

    def numel(self) -> int:
        """Number of first-level constants represented."""
        return self.codes.numel()

    @property
    def nbytes(self) -> int:
        """Stored bytes: 1 per code, 4 per second-level scale, 4 for the offset (tables excluded)."""
        return self.codes.numel() + 4 * self.scale.numel() + 4


def second_level_table(levels) -> torch.Tensor:
    """``"dynamic"`` / ``"fp8_e4m3"`` / a tensor of ≤ 256 levels → a validated float32 table."""
    if isinstance(levels, str):
        if levels not in SECOND_LEVEL_TABLES:
            raise ValueError(f"double_levels must be one of {sorted(SECOND_LEVEL_TABLES)} or a tensor, "
                             f"got {levels!r}")
        return SECOND_LEVEL_TABLES[levels]()
    return as_levels(levels)


def quantize_absmax(absmax: torch.Tensor, levels="dynamic", blocksize: int = 256) -> DoubleQuantizedAbsmax:
    """Double-quantise float32 constants: subtract the mean, then 8-bit blockwise absmax coding.

    ``offset = mean(c₂)``; ``(codes, scale) = blockwise(c₂ − offset, levels, blocksize)``
    (nearest level, ties down, as in the first level). QLoRA §3, eq. (6).
    """
    if not isinstance(absmax, torch.Tensor) or not absmax.is_floating_point() or absmax.dim() != 1:
        raise TypeError("absmax must be a 1-D floating tensor of quantisation constants")
    if absmax.numel() == 0:
        raise ValueError("absmax must hold at least one constant")
    blocksize = check_blocksize(blocksize, "double_blocksize")
    table = second_level_table(levels).to(absmax.device)
    absmax = absmax.float()
    offset = absmax.mean()
    # c₂ − mean(c₂), coded in blocks of 256 with their own float32 absmax c₁
    codes, scale = absmax_codes(pad_to_blocks(absmax - offset, blocksize), table)
    codes = codes.reshape(-1)[: absmax.numel()].to(torch.uint8)
    return DoubleQuantizedAbsmax(codes, scale, offset, table, blocksize)


def dequantize_absmax(d: DoubleQuantizedAbsmax) -> torch.Tensor:
    """``ĉ₂ = levels[code] · c₁[block] + offset``: the float32 first-level constants back."""
    return decode_blocks(d.codes, d.scale, d.levels, d.blocksize) + d.offset
