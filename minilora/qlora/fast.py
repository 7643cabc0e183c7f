"""The fast CPU path of a 4-bit linear layer: never the whole float matrix at once.

bitsandbytes' CPU ``Linear4bit`` dequantises the whole matrix into a fresh tensor, then
multiplies. Two ways to do better, chosen by the number of tokens T:

* few tokens (T ≤ ``FUSED_MAX_TOKENS``, decoding): one ``torch.compile``d reduction reads the
  codes as int32 words (8 codes a word), picks each code's level with a 4-level ``where``
  tree (no gather), scales it by its block's constant and multiplies by x:

      y[t, o] = Σ_b c[o, b] · Σ_{i ∈ b} levels[code[o, i]] · x[t, i]

  The float matrix is never written to memory; the codes (½ byte a weight) are read once per
  chunk of ``FUSED_CHUNK`` tokens, whose reductions share one loop over the codes.
* many tokens (training): dequantise ``TILE_ROWS`` rows at a time into ONE scratch buffer
  shared by every layer (allocated once, so no call pays a fresh allocation and first
  touch), and ``torch.mm`` each tile into its slice of the output while it is in cache.
  The backward pass does the same with ``∂L/∂X += ∂L/∂Y[:, tile] · W_tile``.

Where ``torch.compile`` is unavailable or fails, the first call warns once and the layer
uses the readable path (whole-matrix dequantise + ``F.linear``) from then on: same numbers.
"""

from __future__ import annotations

import types
import warnings

import torch

from ..quant import dequantize_absmax
from ..quant.double import DoubleQuantizedAbsmax

FUSED_MAX_TOKENS = 16  # at most this many tokens: the fused kernel; more: tiles + matmul
FUSED_CHUNK = 4        # tokens per fused call (each chunk size is compiled once)
TILE_ROWS = 256        # rows of W dequantised per tile (256 × 4096 fp32 = 4 MiB)
# bit offset of code k inside a little-endian int32 of 4 bytes (even element = high nibble)
SHIFTS = (4, 0, 12, 8, 20, 16, 28, 24)


def supported(layer) -> bool:
    """The fast path applies to 4-bit CPU layers whose rows are whole blocks of whole words."""
    return (layer.levels.numel() <= 16 and layer.packed.device.type == "cpu"
            and layer.in_features % layer.blocksize == 0 and layer.blocksize % 8 == 0
            and STATE["compile_ok"])


STATE = {"compile_ok": True, "warned": False}


def _disable(error: Exception) -> None:
    """Compilation failed: warn once, use the readable path from now on."""
    STATE["compile_ok"] = False
    if not STATE["warned"]:
        STATE["warned"] = True
        reason = (str(error).splitlines() or [""])[0][:200]
        warnings.warn(f"minilora.qlora fast path unavailable ({type(error).__name__}: {reason}); using the "
                      "readable path (dequantise + F.linear), which gives the same results", RuntimeWarning,
                      stacklevel=4)


def select_levels(codes: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """``levels[codes]`` for 4-bit codes as a binary tree of 15 ``where``: bit 0 picks within
    pairs, bit 1 within quadruples, … (vectorises where a gather does not)."""
    values = [levels[k] for k in range(16)]
    for bit in range(4):
        chosen = ((codes >> bit) & 1) != 0
        values = [torch.where(chosen, values[2 * i + 1], values[2 * i]) for i in range(len(values) // 2)]
    return values[0]


def fused_kernel(x_by_nibble, words, absmax, levels):
    """x_by_nibble (T, 8, in/8) float32 (x[t, 8w + k] at [t, k, w]), words (out, in/8) int32,
    absmax (out, in/B) float32 → (T, out) float32; T is small and unrolled.

    y[t, o] = Σ_w Σ_k levels[code_k(w)] · c[o, ⌊8w/B⌋] · x[t, 8w + k]   (no float matrix stored)
    """
    n_out, n_blocks = absmax.shape
    n_words = words.shape[1]
    # c[o, ⌊8w/B⌋] for every word w (a broadcast index, not a copy, once compiled)
    per_block = n_words // n_blocks
    scale = absmax.view(n_out, n_blocks, 1).expand(n_out, n_blocks, per_block).reshape(n_out, n_words)
    values = [select_levels((words >> s) & 15, levels) * scale for s in SHIFTS]
    rows = []
    for t in range(x_by_nibble.shape[0]):  # one reduction per token, all in one loop over the codes
        acc = values[0] * x_by_nibble[t, 0]
        for k in range(1, 8):
            acc = acc + values[k] * x_by_nibble[t, k]
        rows.append(acc.sum(-1))
    return torch.stack(rows)


def tile_kernel(words, absmax, levels, out):
    """Dequantise a tile in place: words (rows, in/8), absmax (rows, in/B) → out (rows, in).

    Ŵ[o, 8w + k] = levels[code_k(w)] · c[o, ⌊8w/B⌋]   (float32 product, cast to out's dtype)
    """
    rows, n_blocks = absmax.shape
    words = words.view(rows, n_blocks, -1)
    values = torch.stack([select_levels((words >> s) & 15, levels) for s in SHIFTS], -1)
    out.copy_((values * absmax.view(rows, n_blocks, 1, 1)).view(rows, -1))


# inductor would store the decoded levels once and read them in each token's reduction; keep
# them in registers instead (recomputed, which is cheap, instead of written to memory)
FUSE_OPTIONS = {"realize_opcount_threshold": 10**6, "realize_reads_threshold": 10**6,
                "realize_acc_reads_threshold": 10**6, "realize_cpu_opcount_threshold": 10**6}
COMPILED: dict = {}


def _compiled(fn, key=(), fuse=False):
    """``torch.compile(fn)`` for one shape class ``key``. Each key compiles a copy of ``fn``'s
    code: dynamo keeps its compiled versions per code object with a small limit (8), and a
    model's many layer shapes × token counts would otherwise exceed it and fall back, silently,
    to slow eager code."""
    if (fn.__name__, key) not in COMPILED:
        import torch._inductor.config as inductor_config

        options = {k: v for k, v in FUSE_OPTIONS.items() if hasattr(inductor_config, k)} if fuse else None
        copy = types.FunctionType(fn.__code__.replace(), fn.__globals__, fn.__name__, fn.__defaults__,
                                  fn.__closure__)
        COMPILED[fn.__name__, key] = torch.compile(copy, dynamic=False, options=options)
    return COMPILED[fn.__name__, key]


class Scratch:
    """One preallocated buffer per dtype, shared by every 4-bit layer (grown, never shrunk)."""

    def __init__(self):
        self.buffers: dict = {}

    def get(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        buf = self.buffers.get(dtype)
        if buf is None or buf.numel() < numel:
            buf = torch.zeros(numel, dtype=dtype)  # zeros: touched once, here
            self.buffers[dtype] = buf
        return buf[:numel]


SCRATCH = Scratch()


def absmax_matrix(layer) -> torch.Tensor:
    """The float32 constants as (out, in/B), decoded from 8 bits when double-quantised."""
    if layer.double_quant:
        d = DoubleQuantizedAbsmax(layer.absmax_codes, layer.absmax_scale, layer.absmax_offset,
                                  layer.absmax_levels, layer.double_blocksize)
        absmax = dequantize_absmax(d)
    else:
        absmax = layer.absmax
    return absmax.view(layer.out_features, layer.in_features // layer.blocksize)


def _operands(layer):
    words = layer.packed.view(torch.int32).view(layer.out_features, layer.in_features // 8)
    levels = torch.cat([layer.levels, layer.levels.new_zeros(16 - layer.levels.numel())])  # INT4: 15
    return words, absmax_matrix(layer), levels


def _tiles(layer, dtype):
    """Yield (row slice, dequantised tile in the shared scratch buffer)."""
    words, absmax, levels = _operands(layer)
    rows = min(TILE_ROWS, layer.out_features)
    scratch = SCRATCH.get(rows * layer.in_features, dtype)
    for r0 in range(0, layer.out_features, rows):
        r1 = min(r0 + rows, layer.out_features)
        tile = scratch[: (r1 - r0) * layer.in_features].view(r1 - r0, layer.in_features)
        _compiled(tile_kernel, (r1 - r0, layer.in_features, layer.blocksize, dtype))(
            words[r0:r1], absmax[r0:r1], levels, tile)
        yield slice(r0, r1), tile


def linear(layer, x: torch.Tensor, bias) -> torch.Tensor:
    """``x Wᵀ + b`` by the fused kernel (few tokens) or tiles (many); readable on failure."""
    x2 = x.reshape(-1, layer.in_features)
    try:
        if x2.shape[0] <= FUSED_MAX_TOKENS:
            words, absmax, levels = _operands(layer)
            # x[t, 8w + k] → [t, k, w], so each of the 8 codes of a word meets a contiguous row of x
            x_by_nibble = x2.float().view(x2.shape[0], -1, 8).transpose(1, 2).contiguous()
            shape = (layer.out_features, layer.in_features, layer.blocksize)
            # FUSED_CHUNK tokens per call: more reductions per loop stop fitting in registers
            y = torch.cat([_compiled(fused_kernel, (*shape, min(FUSED_CHUNK, x2.shape[0] - t)), fuse=True)(
                               x_by_nibble[t:t + FUSED_CHUNK], words, absmax, levels)
                           for t in range(0, x2.shape[0], FUSED_CHUNK)])
            if bias is not None:  # added in float32, then one rounding to the compute dtype
                y += bias
            return y.to(x.dtype).view(*x.shape[:-1], layer.out_features)
        else:
            y = x2.new_empty(x2.shape[0], layer.out_features)
            for rows, tile in _tiles(layer, x.dtype):
                torch.mm(x2, tile.t(), out=y[:, rows])  # each tile's product while it is in cache
    except Exception as e:  # no C++ compiler, unsupported build: same numbers the readable way
        _disable(e)
        return torch.nn.functional.linear(x, layer.dequantized_weight(x.dtype), bias)
    if bias is not None:
        y += bias
    return y.view(*x.shape[:-1], layer.out_features)


def linear_t(layer, grad: torch.Tensor) -> torch.Tensor:
    """``∂L/∂X = ∂L/∂Y · W`` tile by tile: ``Σ_tiles ∂L/∂Y[:, tile] · W_tile``."""
    g2 = grad.reshape(-1, layer.out_features)
    try:
        out = g2.new_zeros(g2.shape[0], layer.in_features)
        for rows, tile in _tiles(layer, grad.dtype):
            out.addmm_(g2[:, rows], tile)
    except Exception as e:
        _disable(e)
        return grad @ layer.dequantized_weight(grad.dtype)
    return out.view(*grad.shape[:-1], layer.in_features)


def dequantize_into(layer, dtype=torch.float32, out: torch.Tensor | None = None) -> torch.Tensor:
    """The whole (out × in) weight by the tile kernel in one call, written into ``out`` when
    given (a caller-supplied buffer: no fresh allocation and first touch), else a new tensor.
    Same values as ``layer.dequantized_weight(dtype)`` (float32 product, then cast)."""
    shape = (layer.out_features, layer.in_features)
    if out is None:
        out = torch.empty(shape, dtype=dtype)
    elif not isinstance(out, torch.Tensor) or tuple(out.shape) != shape or not out.is_contiguous():
        raise ValueError(f"out must be a contiguous tensor of shape {shape}")
    if not supported(layer):
        return out.copy_(layer.dequantized_weight(out.dtype))
    words, absmax, levels = _operands(layer)
    try:
        rows = min(TILE_ROWS, layer.out_features)
        for r0 in range(0, layer.out_features, rows):  # tile by tile: cache-sized
            r1 = min(r0 + rows, layer.out_features)
            key = (r1 - r0, layer.in_features, layer.blocksize, out.dtype)
            _compiled(tile_kernel, key)(words[r0:r1], absmax[r0:r1], levels, out[r0:r1])
    except Exception as e:
        _disable(e)
        out.copy_(layer.dequantized_weight(out.dtype))
    return out
