"""Blockwise absmax quantisation of a whole tensor, and the QuantizedTensor that stores it.

    q = quantize_blockwise(W, nf4_levels(), blocksize=64, double_quant=True)
    W_hat = dequantize(q)             # same shape and dtype as W
    bits_per_parameter(q)             # 4 + 8/64 + 32/(64·256) ≈ 4.127

QLoRA §2 (block-wise k-bit quantisation) and §3 (NF4, double quantisation). Codes agree
with bitsandbytes' ``quantize_4bit`` code for code (tests/test_quant_bnb.py). Tensors stay on
their device: CUDA in, CUDA out.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .codes import (
    absmax_codes,
    check_blocksize,
    decode_blocks,
    first_bad_block,
    pack_nibbles,
    pad_to_blocks,
    unpack_nibbles,
)
from .double import DoubleQuantizedAbsmax, dequantize_absmax, quantize_absmax, second_level_table
from .fast import COMPILE_MIN_NUMEL, dequantize_fast, quantize_fast
from .levels import as_levels

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
IMPLS = ("auto", "reference", "eager", "compiled")


@dataclass(frozen=True)
class QuantizedTensor:
    """A blockwise-quantised tensor.

    ``packed``: uint8 codes, two per byte with the even element in the high nibble when the
    table has ≤ 16 levels (one per byte otherwise); ``absmax``: float32 constant per block,
    or its ``DoubleQuantizedAbsmax``; ``shape``, ``dtype`` of the original; ``blocksize``;
    ``levels``: the float32 code table (index = code).
    """

    packed: torch.Tensor
    absmax: torch.Tensor | DoubleQuantizedAbsmax
    shape: torch.Size
    dtype: torch.dtype
    blocksize: int
    levels: torch.Tensor

    def __post_init__(self):
        """Check every field against the others (a container built or ``dataclasses.replace``-d
        by hand); a ValueError/TypeError names the inconsistent field."""
        try:
            object.__setattr__(self, "shape", torch.Size(self.shape))
        except TypeError:
            raise TypeError(f"shape must be a sequence of ints, got {self.shape!r}") from None
        if any(d < 0 for d in self.shape) or self.shape.numel() == 0:
            raise ValueError("shape must have non-negative sizes and at least one element, "
                             f"got {tuple(self.shape)}")
        if self.dtype not in FLOAT_DTYPES:
            raise TypeError(f"dtype must be one of {FLOAT_DTYPES}, got {self.dtype!r}")
        check_blocksize(self.blocksize)
        levels = as_levels(self.levels)
        if isinstance(self.packed, torch.Tensor):  # store the validated float32 table beside the codes
            object.__setattr__(self, "levels", levels.to(self.packed.device))
        n, blocks = self.shape.numel(), -(-self.shape.numel() // self.blocksize)
        want = (n + 1) // 2 if levels.numel() <= 16 else n
        packed = self.packed
        if not isinstance(packed, torch.Tensor) or packed.dtype != torch.uint8 or packed.dim() != 1:
            raise ValueError("packed must be a 1-D uint8 tensor")
        if self.packed.numel() != want:
            raise ValueError(f"packed must hold {want} bytes for shape {tuple(self.shape)} "
                             f"({'two codes' if levels.numel() <= 16 else 'one code'} per byte), "
                             f"got {self.packed.numel()}")
        if isinstance(self.absmax, DoubleQuantizedAbsmax):
            if self.absmax.numel() != blocks:
                raise ValueError(f"absmax must hold {blocks} constants (one per block of {self.blocksize}), "
                                 f"got {self.absmax.numel()}")
            if self.absmax.codes.device != self.packed.device:
                raise ValueError("absmax and packed must be on the same device")
        else:
            a = self.absmax
            if not isinstance(a, torch.Tensor) or a.dtype != torch.float32 or tuple(a.shape) != (blocks,):
                raise ValueError(f"absmax must be a float32 tensor of shape ({blocks},) (one per block of "
                                 f"{self.blocksize}) or a DoubleQuantizedAbsmax, got "
                                 f"{getattr(a, 'dtype', type(a).__name__)} {tuple(getattr(a, 'shape', ()))}")
            if a.device != self.packed.device:
                raise ValueError("absmax and packed must be on the same device")
            if not bool((torch.isfinite(a) & (a >= 0)).all()):
                raise ValueError("absmax must hold finite, non-negative block maxima")
        if levels.numel() < (16 if levels.numel() <= 16 else 256):  # some codes have no level
            top = int(self.codes().max())
            if top >= levels.numel():
                raise ValueError(f"packed holds code {top}, but levels has only {levels.numel()} entries")

    def numel(self) -> int:
        """Number of quantised values."""
        return self.shape.numel()

    @property
    def device(self) -> torch.device:
        return self.packed.device

    @property
    def double_quant(self) -> bool:
        return isinstance(self.absmax, DoubleQuantizedAbsmax)

    @property
    def nibbles(self) -> bool:
        """True when codes are packed two per byte (tables of at most 16 levels)."""
        return self.levels.numel() <= 16

    @property
    def nbytes(self) -> int:
        """Exact stored bytes: packed codes + constants (+ the offset when double-quantised).

        The code tables (64 bytes for NF4, 1 KiB for the dynamic map) are shared by every
        tensor of a data type and not counted, as in the paper's bits-per-parameter.
        """
        constants = self.absmax.nbytes if self.double_quant else 4 * self.absmax.numel()
        return self.packed.numel() + constants

    def codes(self) -> torch.Tensor:
        """The ``numel()`` codes as uint8, in element order."""
        n = self.numel()
        return unpack_nibbles(self.packed, n) if self.nibbles else self.packed[:n]

    def absmax_float(self) -> torch.Tensor:
        """The float32 per-block constants (decoded from 8 bits when double-quantised)."""
        return dequantize_absmax(self.absmax) if self.double_quant else self.absmax


def bits_per_parameter(q: QuantizedTensor) -> float:
    """Measured storage cost ``8 · nbytes / numel``: 4 + 32/64 = 4.5 for NF4 with fp32
    constants per 64, 4 + 8/64 + 32/(64·256) ≈ 4.127 with double quantisation (QLoRA §3)."""
    if not isinstance(q, QuantizedTensor):
        raise TypeError(f"q must be a QuantizedTensor, got {type(q).__name__}")
    return 8.0 * q.nbytes / q.numel()


def _path(impl, device: torch.device, numel: int, n_levels: int) -> str:
    """Which implementation runs: "reference", "eager" or "compiled" (see quantize_blockwise)."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if n_levels > 16:  # the fast kernels are for two codes per byte
        return "reference"
    if impl == "auto":
        return "compiled" if device.type == "cpu" and numel >= COMPILE_MIN_NUMEL else "eager"
    return impl


def quantize_blockwise(x: torch.Tensor, levels, blocksize: int = 64, double_quant: bool = False, *,
                       double_levels="dynamic", double_blocksize: int = 256, impl: str = "auto"
                       ) -> QuantizedTensor:
    """Quantise ``x`` in blocks of ``blocksize`` to the nearest of ``levels`` (QLoRA §2, §3).

    Per block b: ``c_b = max|x_b|``, ``code_i = argmin_j |x_i/c_b − levels_j|`` (ties to the
    smaller level). Any shape (flattened row-major; a partial last block is fine), float32 /
    float16 / bfloat16. ``double_quant=True`` stores the constants in 8 bits (see
    ``double.quantize_absmax``; ``double_levels`` "dynamic" or "fp8_e4m3"). ``impl``:
    "reference" (readable eager code), "eager" (fast eager kernels), "compiled"
    (``torch.compile``, eager fallback), "auto" (compiled for CPU tensors of ≥ 4M elements,
    the eager kernels otherwise). All give identical codes.
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"x must be float32, float16 or bfloat16, got {x.dtype}")
    if x.numel() == 0:
        raise ValueError("x must have at least one element")
    table = as_levels(levels).to(x.device)
    blocksize = check_blocksize(blocksize)
    if not isinstance(double_quant, bool):
        raise TypeError(f"double_quant must be a bool, got {double_quant!r}")
    second_level_table(double_levels)  # checked even when unused: a typo is never silently ignored
    check_blocksize(double_blocksize, "double_blocksize")
    path = _path(impl, x.device, x.numel(), table.numel())
    flat, n = x.detach().reshape(-1), x.numel()
    blocks = flat.view(-1, blocksize) if n % blocksize == 0 else pad_to_blocks(flat, blocksize)
    if path == "reference":
        bad = first_bad_block(blocks.abs().amax(1))  # name the block before the coder sees NaN
        if bad is not None:
            raise ValueError(f"x contains NaN or Inf in block {bad} (elements {bad * blocksize}.."
                             f"{min(n, (bad + 1) * blocksize) - 1} of the flattened tensor)")
        codes, absmax = absmax_codes(blocks, table)
        # an odd count's last byte gets the code of a padding 0.0 (as bitsandbytes)
        codes = codes.reshape(-1)
        packed = pack_nibbles(codes[: n + n % 2]) if table.numel() <= 16 else codes[:n].to(torch.uint8)
    else:
        packed, absmax = quantize_fast(blocks, table, compiled=path == "compiled")
        packed = packed[: (n + 1) // 2]
    bad = first_bad_block(absmax)
    if bad is not None:
        raise ValueError(f"x contains NaN or Inf in block {bad} (elements {bad * blocksize}.."
                         f"{min(n, (bad + 1) * blocksize) - 1} of the flattened tensor)")
    if double_quant:
        absmax = quantize_absmax(absmax, double_levels, double_blocksize)
    return QuantizedTensor(packed, absmax, x.shape, x.dtype, blocksize, table)


def dequantize(q: QuantizedTensor, impl: str = "auto") -> torch.Tensor:
    """Back to a tensor of the original shape, dtype and device: ``x̂_i = levels[code_i] · c_b``.

    The product is formed in float32 and then cast (what bitsandbytes does). ``impl`` as in
    ``quantize_blockwise``; the byte-table kernels ("eager"/"compiled") equal "reference".
    """
    if not isinstance(q, QuantizedTensor):
        raise TypeError(f"q must be a QuantizedTensor, got {type(q).__name__}")
    n = q.numel()
    absmax = q.absmax_float()
    path = _path(impl, q.device, n, q.levels.numel())
    if path == "reference":
        flat = decode_blocks(q.codes(), absmax, q.levels, q.blocksize).to(q.dtype)
    else:
        flat = dequantize_fast(q.packed, absmax, q.levels, q.blocksize, n, q.dtype,
                               compiled=path == "compiled")
    return flat.reshape(q.shape)
