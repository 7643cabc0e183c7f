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

    def __post_init__(self):
        """Every field consistent with the others, or a ValueError naming the field."""
        check_blocksize(self.blocksize, "blocksize")
        codes = self.codes
        if not isinstance(codes, torch.Tensor) or codes.dtype != torch.uint8 or codes.dim() != 1:
            raise ValueError("codes must be a 1-D uint8 tensor (one 8-bit code per first-level constant)")
        if self.codes.numel() == 0:
            raise ValueError("codes must hold at least one constant")
        blocks = -(-self.codes.numel() // self.blocksize)
        if (not isinstance(self.scale, torch.Tensor) or self.scale.dtype != torch.float32
                or tuple(self.scale.shape) != (blocks,)):
            raise ValueError(f"scale must be a float32 tensor of shape ({blocks},): one per block of "
                             f"{self.blocksize} codes, got {getattr(self.scale, 'shape', self.scale)!r}")
        if not bool(torch.isfinite(self.scale).all()):
            raise ValueError("scale must be finite")
        if not isinstance(self.offset, torch.Tensor) or self.offset.numel() != 1 or not bool(
                torch.isfinite(self.offset).all()):
            raise ValueError("offset must be a finite scalar tensor (the mean of the constants)")
        levels = as_levels(self.levels)
        if int(self.codes.max()) >= levels.numel():
            raise ValueError(f"codes must index the {levels.numel()}-level table, found code "
                             f"{int(self.codes.max())}")

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
    if not bool(torch.isfinite(absmax).all()):
        raise ValueError("absmax must be finite (a NaN/inf constant has no 8-bit code)")
    blocksize = check_blocksize(blocksize, "double_blocksize")
    table = second_level_table(levels).to(absmax.device)
    absmax = absmax.float()
    # mean(c₂) summed in float64: a float32 sum of constants near 3.4e38 would overflow to inf
    offset = absmax.double().mean().float()
    # c₂ − mean(c₂), coded in blocks of 256 with their own float32 absmax c₁
    codes, scale = absmax_codes(pad_to_blocks(absmax - offset, blocksize), table)
    codes = codes.reshape(-1)[: absmax.numel()].to(torch.uint8)
    return DoubleQuantizedAbsmax(codes, scale, offset, table, blocksize)


def dequantize_absmax(d: DoubleQuantizedAbsmax) -> torch.Tensor:
    """``ĉ₂ = levels[code] · c₁[block] + offset``: the float32 first-level constants back.

    The float32 sum is clamped to the float32 range: constants that sat at the top of that
    range would otherwise round up to inf (below it the clamp changes nothing, so the values
    stay bit-identical to bitsandbytes')."""
    if not isinstance(d, DoubleQuantizedAbsmax):
        raise TypeError(f"d must be a DoubleQuantizedAbsmax, got {type(d).__name__}")
    top = torch.finfo(torch.float32).max
    return (decode_blocks(d.codes, d.scale, d.levels, d.blocksize) + d.offset).clamp(-top, top)
