"""Fast kernels for 4-bit blockwise coding; same codes and values as ``codes.py`` (tested).

Three tricks, each replacing a memory pass or a per-element search:

* quantise: a branch-free binary search over the 15 sorted midpoints (4 compare steps for
  16 levels) instead of ``bucketize``, written as plain tensor ops so that ``torch.compile``
  fuses absmax, scaling, search and nibble packing into one pass over the data.
* dequantise: a byte-indexed table ``T[b] = (levels[b >> 4], levels[b & 15])``, so one
  gather per stored byte yields both values; compiled, gather and absmax multiply fuse.
* ``torch.compile`` once per shape class (device, dtype, blocksize, table size), the block
  count left dynamic; where compilation is unavailable (no C++ compiler, no triton) the
  first call warns and every later call runs the eager kernels, which give the same result.

For the 4-bit layers (``minilora.qlora.fast``) two more: ``dequantize_tiled`` runs the byte
table on cache-sized tiles straight into the destination (no full-size float32 temporary),
and ``empty_huge`` allocates a large output on 2 MiB pages, so its first touch costs 16 page
faults per 32 MiB instead of 8192.
"""

from __future__ import annotations

import ctypes
import math
import sys
import warnings

import torch

from .codes import scale_blocks, sorted_midpoints

COMPILE_MIN_NUMEL = 1 << 22  # "auto" compiles on CPU from 4M elements: the compile amortises


def padded_midpoints(levels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Sorted midpoints padded with +inf to 2^s − 1 entries, the sort order padded to 2^s,
    and s, the number of binary-search steps (4 for 16 levels)."""
    midpoints, order = sorted_midpoints(levels)
    steps = max(1, math.ceil(math.log2(levels.numel())))
    pad = 2**steps - 1 - midpoints.numel()
    midpoints = torch.cat([midpoints, midpoints.new_full((pad,), math.inf)])
    return midpoints, torch.cat([order, order.new_zeros(pad)]), steps


def pack_pairs(codes: torch.Tensor) -> torch.Tensor:
    """``(n_blocks, B)`` codes → ``(n_blocks, B/2)`` bytes: ``code_even << 4 | code_odd``."""
    pairs = codes.to(torch.uint8).view(codes.shape[0], -1, 2)
    return (pairs[..., 0] << 4) | pairs[..., 1]


def quantize_kernel(blocks, midpoints, order, steps: int):
    """``(n_blocks, B)`` → (packed ``(n_blocks, B/2)`` uint8, float32 absmax); compilable.

    Binary search for ``pos = #{m_j < x}``: ``pos += step·[m_{pos+step−1} < x]`` for
    step = 2^(s−1), …, 1 (midpoints padded with +inf); the code is ``order[pos]``.
    """
    scaled, absmax = scale_blocks(blocks)
    position = torch.zeros_like(scaled, dtype=torch.int64)
    for k in reversed(range(steps)):
        step = 1 << k
        # pos += step · [m_{pos+step−1} < x]
        position = position + step * (midpoints[position + (step - 1)] < scaled).long()
    return pack_pairs(order[position]), absmax


def quantize_eager(blocks, midpoints, order, steps: int):
    """Eager twin of ``quantize_kernel``: ``bucketize`` is the fastest search without fusion,
    and the ``order`` gather is skipped for a sorted table (NF4, INT4)."""
    scaled, absmax = scale_blocks(blocks)
    position = torch.bucketize(scaled, midpoints, out_int32=True)
    k = int(midpoints.isfinite().sum()) + 1  # number of real levels
    if not torch.equal(order[:k], torch.arange(k, device=order.device)):  # an unsorted table
        position = order[position]
    return pack_pairs(position), absmax


def byte_table(levels: torch.Tensor) -> torch.Tensor:
    """``(256, 2)`` float32: row b holds the two values byte b decodes to (high nibble first)."""
    table16 = torch.cat([levels, levels.new_zeros(16 - levels.numel())])  # unused codes → 0
    b = torch.arange(256, device=levels.device)
    return torch.stack([table16[b >> 4], table16[b & 0xF]], dim=1).contiguous()


def dequantize_kernel(packed, absmax, table, dtype):
    """``(n_blocks, B/2)`` bytes → ``(n_blocks, B)`` ``T[byte] · c_block`` (float32 product,
    then cast to ``dtype``); compilable."""
    pairs = table[packed.long()]  # (n_blocks, B/2, 2): one gather per byte yields two values
    return (pairs * absmax.view(-1, 1, 1)).view(packed.shape[0], -1).to(dtype)


def dequantize_eager(packed, absmax, table, dtype):
    """Eager twin of ``dequantize_kernel``: the ``(256, 2)`` float32 table is read as 256
    int64 so ``index_select`` moves both values of a byte in one 8-byte gather."""
    table64 = table.view(torch.int64).view(-1)
    pairs = torch.index_select(table64, 0, packed.reshape(-1).int()).view(torch.float32)
    return pairs.view(packed.shape[0], -1).mul_(absmax.unsqueeze(1)).to(dtype)


TILE_BYTES = 1 << 15  # packed bytes per tile of dequantize_tiled: 256 KiB of float32 pairs, in L2


def dequantize_tiled(packed: torch.Tensor, absmax: torch.Tensor, table: torch.Tensor, out: torch.Tensor,
                     tile_bytes: int = TILE_BYTES) -> torch.Tensor:
    """``(n_blocks, B/2)`` bytes, float32 ``(n_blocks,)`` constants, ``(256, 2)`` float32 table →
    ``out`` ``(n_blocks, B)`` (any float dtype, contiguous), filled in place and returned:

        out[b, 2i], out[b, 2i+1] = T[packed[b, i]] · c_b     (float32 product, one rounding)

    Tile by tile (``tile_bytes`` bytes): one ``index_select`` per tile moves both float32
    values of a byte as one int64, one multiply by the constants writes the tile — for a
    float32 ``out`` in place in ``out`` itself, otherwise from a cache-sized scratch with the
    rounding to ``out``'s dtype done by that same multiply. Same values as
    ``dequantize_eager`` (and so as the reference), without a full-size temporary."""
    n_blocks, half = packed.shape
    table64 = table.contiguous().view(torch.int64).view(-1)
    step = max(1, tile_bytes // half)  # whole blocks per tile
    index = torch.empty(min(step, n_blocks) * half, dtype=torch.int32)
    direct = out.dtype == torch.float32
    pairs = None if direct else torch.empty(index.numel(), dtype=torch.int64)
    for b0 in range(0, n_blocks, step):
        b1 = min(b0 + step, n_blocks)
        k = (b1 - b0) * half
        index[:k].copy_(packed[b0:b1].view(-1))  # uint8 → int32 (index_select's index type)
        target = out[b0:b1].view(torch.int64).view(-1) if direct else pairs[:k]
        torch.index_select(table64, 0, index[:k], out=target)
        values = target.view(torch.float32).view(b1 - b0, 2 * half)
        torch.mul(values, absmax[b0:b1].unsqueeze(1), out=out[b0:b1])
    return out


HUGE_PAGE = 2 << 20  # bytes of an x86-64 / arm64 transparent huge page
MADV_HUGEPAGE = 14   # <sys/mman.h>


def _madvise():
    """libc's ``madvise`` on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return fn


MADVISE = _madvise()


def empty_huge(shape, dtype: torch.dtype) -> torch.Tensor:
    """``torch.empty(shape, dtype)`` on the CPU whose whole 2 MiB pages are advised
    (``madvise(MADV_HUGEPAGE)``) to be transparent huge pages before anything touches them:
    a fresh 32 MiB output then costs 16 page faults instead of 8192 (first touch of fresh
    memory is most of a bulk dequantise's time otherwise). A plain ``torch.empty`` where the
    call is unavailable or the kernel declines (not Linux, THP "never"): same tensor."""
    out = torch.empty(shape, dtype=dtype)
    nbytes = out.numel() * out.element_size()
    if MADVISE is not None and nbytes >= 2 * HUGE_PAGE:
        start = -(-out.data_ptr() // HUGE_PAGE) * HUGE_PAGE
        end = (out.data_ptr() + nbytes) // HUGE_PAGE * HUGE_PAGE
        if end > start:
            MADVISE(start, end - start, MADV_HUGEPAGE)  # advice only: a failure changes nothing
    return out


class CompiledKernel:
    """``torch.compile(fn)`` built lazily once per shape-class key, with an eager fallback.

    The first dimension of the tensor arguments (the block count) is marked dynamic, so a
    new matrix size does not recompile; a new dtype / blocksize / table size is a new key.
    If compiling or running the compiled code raises, it warns once with the reason and
    calls ``fallback`` (same arguments, same result) for that key from then on.
    """

    def __init__(self, fn, fallback):
        self.fn, self.fallback = fn, fallback
        self.compiled: dict = {}  # key -> compiled callable, or None after a failure

    def __call__(self, key, *args):
        if key not in self.compiled:
            self.compiled[key] = torch.compile(self.fn, dynamic=False)
        compiled = self.compiled[key]
        if compiled is None:
            return self.fallback(*args)
        for a in args:
            if isinstance(a, torch.Tensor) and a.dim() >= 1 and a.shape[0] > 1:
                torch._dynamo.maybe_mark_dynamic(a, 0)
        try:
            return compiled(*args)
        except Exception as e:  # no C++ compiler / triton, or an unsupported build
            self.compiled[key] = None
            reason = (str(e).splitlines() or [""])[0][:200]
            warnings.warn(f"torch.compile failed for {self.fn.__name__} ({type(e).__name__}: {reason}); "
                          "using the eager kernels", RuntimeWarning, stacklevel=3)
            return self.fallback(*args)


QUANTIZE = CompiledKernel(quantize_kernel, quantize_eager)
DEQUANTIZE = CompiledKernel(dequantize_kernel, dequantize_eager)


def quantize_fast(blocks: torch.Tensor, levels: torch.Tensor, compiled: bool):
    """Blocks ``(n_blocks, B)`` (any float dtype) → (flat packed uint8, float32 absmax).
    ``levels`` must have at most 16 entries (two codes per byte)."""
    midpoints, order, steps = padded_midpoints(levels.to(blocks.device))
    if not compiled:
        packed, absmax = quantize_eager(blocks, midpoints, order, steps)
    else:
        key = (blocks.device.type, blocks.dtype, blocks.shape[1], steps)
        packed, absmax = QUANTIZE(key, blocks, midpoints, order, steps)
    return packed.reshape(-1), absmax


def dequantize_fast(packed: torch.Tensor, absmax: torch.Tensor, levels: torch.Tensor, blocksize: int,
                    n: int, dtype: torch.dtype, compiled: bool) -> torch.Tensor:
    """Flat packed bytes + float32 absmax → ``(n,)`` of ``dtype`` via the byte table."""
    table = byte_table(levels.to(packed.device))
    pad = absmax.numel() * blocksize // 2 - packed.numel()  # a partial last block
    if pad:
        packed = torch.cat([packed, packed.new_zeros(pad)])
    packed = packed.view(absmax.numel(), blocksize // 2)
    if compiled:
        out = DEQUANTIZE((packed.device.type, blocksize, dtype), packed, absmax, table, dtype)
    else:
        out = dequantize_eager(packed, absmax, table, dtype)
    return out.reshape(-1)[:n]
