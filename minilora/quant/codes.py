"""Blockwise absmax coding, the readable reference (QLoRA §2 "Block-wise k-bit Quantization").

    c_b = max |x_b|                      one float32 constant per block b of ``blocksize`` values
    code = nearest level of x / c_b      ties go to the smaller level
    x̂ = levels[code] · c_b

Codes of up to 16 levels are packed two per byte, the even element in the high nibble
(bitsandbytes' layout). Everything here is plain eager PyTorch and works on any device;
``minilora.quant.fast`` computes the same codes faster and is tested against this file.
"""

from __future__ import annotations

import torch

from ..checks import check_int
from .levels import as_levels

TINY = 1e-38  # absmax floor before taking 1/c: an all-zero block scales to zeros, not NaN


def check_blocksize(blocksize, name: str = "blocksize") -> int:
    """A block size must be an int power of two in 32…4096 (bitsandbytes' range)."""
    blocksize = check_int(blocksize, name, 32, 4096, " and a power of two")
    if blocksize & (blocksize - 1):
        raise ValueError(f"{name} must be a power of two in 32..4096, got {blocksize!r}")
    return blocksize


def pad_to_blocks(flat: torch.Tensor, blocksize: int) -> torch.Tensor:
    """``(n,)`` → ``(ceil(n/B), B)`` float32, the partial last block padded with zeros."""
    flat = flat.float()
    pad = -flat.numel() % blocksize
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return flat.view(-1, blocksize)


def first_bad_block(absmax: torch.Tensor) -> int | None:
    """Index of the first block whose absmax is NaN/Inf (max propagates both), else None."""
    bad = ~torch.isfinite(absmax)
    return int(bad.nonzero()[0, 0]) if bool(bad.any()) else None


def sorted_midpoints(levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(midpoints, order)``: float32 midpoints between neighbouring sorted levels, and the
    permutation that sorts the table (stable, so equal levels keep their table order)."""
    ordered, order = torch.sort(levels, stable=True)
    # m_j = (l_j + l_{j+1}) / 2 in float32: the decision boundaries of nearest rounding
    return (ordered[:-1] + ordered[1:]) / 2, order


def nearest_codes(scaled: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Code of the nearest level for each value in [−1, 1], ties to the smaller level.

    With sorted midpoints m, the sorted position is ``#{j : m_j < x}`` (a value exactly on
    a midpoint is not counted, so it rounds down); ``order`` maps it back to a table index.
    Returns int64 codes of the same shape.
    """
    if not isinstance(scaled, torch.Tensor) or not scaled.is_floating_point():
        raise TypeError(f"scaled must be a floating tensor, got {type(scaled).__name__}")
    if not torch.isfinite(scaled).all():
        raise ValueError("scaled must hold finite values in [-1, 1] (NaN/inf has no nearest level)")
    levels = as_levels(levels)
    midpoints, order = sorted_midpoints(levels.to(scaled.device))
    position = torch.bucketize(scaled, midpoints)  # = #{j : m_j < x}
    return order[position]


def scale_blocks(blocks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n_blocks, B)`` → (values scaled into [−1, 1], float32 absmax per block).

    ``c = max|x|`` per block; ``x / c`` is computed as ``x · (1/c)`` (what bitsandbytes'
    kernels do) and clamped to [−1, 1] against rounding.
    """
    blocks = blocks.float()
    absmax = blocks.abs().amax(dim=1)
    # x / c_b, as x · (1 / max(c_b, tiny)) so a zero block gives 0 · 1e38 = 0
    scaled = (blocks * (1.0 / absmax.clamp(min=TINY)).unsqueeze(1)).clamp(-1.0, 1.0)
    return scaled, absmax


def absmax_codes(blocks: torch.Tensor, levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference blockwise coding of ``(n_blocks, B)`` blocks → (int64 codes, float32 absmax)."""
    scaled, absmax = scale_blocks(blocks)
    return nearest_codes(scaled, levels), absmax


def pack_nibbles(codes: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte: ``byte_k = code_{2k} << 4 | code_{2k+1}``.

    An odd count is padded with a zero nibble. Returns ``ceil(n/2)`` uint8 values.
    """
    if not isinstance(codes, torch.Tensor) or codes.is_floating_point() or codes.is_complex():
        raise TypeError("codes must be an integer tensor of 4-bit codes (0..15)")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) > 15):
        raise ValueError(f"codes must be in 0..15 to fit a nibble, got values in "
                         f"[{int(codes.min())}, {int(codes.max())}]")
    codes = codes.reshape(-1).to(torch.uint8)
    if codes.numel() % 2:
        codes = torch.cat([codes, codes.new_zeros(1)])
    pairs = codes.view(-1, 2)
    return (pairs[:, 0] << 4) | pairs[:, 1]


def unpack_nibbles(packed: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of ``pack_nibbles``: the first ``n`` codes as uint8 (high nibble first)."""
    if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8:
        got = getattr(packed, "dtype", type(packed).__name__)
        raise TypeError(f"packed must be a uint8 tensor, got {got}")
    n = check_int(n, "n", 0, 2 * packed.numel(), " (two codes per byte)")
    packed = packed.reshape(-1)
    pairs = torch.stack([packed >> 4, packed & 0xF], dim=1)
    return pairs.reshape(-1)[:n]


def decode_blocks(codes: torch.Tensor, absmax: torch.Tensor, levels: torch.Tensor,
                  blocksize: int) -> torch.Tensor:
    """Reference dequantisation: ``x̂_i = levels[code_i] · c_{⌊i/B⌋}``, float32, one per code."""
    n = codes.numel()
    values = levels.to(codes.device)[codes.reshape(-1).long()]
    values = torch.cat([values, values.new_zeros(-n % blocksize)]).view(-1, blocksize)
    return (values * absmax.unsqueeze(1)).reshape(-1)[:n]
