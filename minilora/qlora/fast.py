"""The fast CPU path of a 4-bit linear layer.

bitsandbytes' CPU ``Linear4bit`` dequantises the whole matrix into a fresh tensor, then
multiplies. Where the time goes there: decoding the codes, and the first touch of a fresh
64 MiB tensor (page faults). Two ways to do better, chosen by the number of tokens T:

* few tokens (T ≤ ``FUSED_MAX_TOKENS``, decoding), any compute dtype: one ``torch.compile``d
  reduction reads the codes as int32 words (8 codes a word), picks each code's level with a
  4-level ``where`` tree (no gather), scales it by its block's constant and multiplies by x:

      y[t, o] = Σ_b c[o, b] · Σ_{i ∈ b} levels[code[o, i]] · x[t, i]

  The float matrix is never written to memory; the codes (½ byte a weight) are read once per
  chunk of ``FUSED_CHUNK`` tokens, whose reductions share one loop over the codes. Sums are
  float32 whatever the compute dtype; the bias is added in float32, then one rounding.
* many tokens (training): decode the whole matrix into ONE scratch buffer shared by every
  4-bit layer (allocated once on huge pages, so no call pays a fresh allocation and first
  touch), by the byte table of ``minilora.quant.fast`` (``T[byte] = (levels[byte >> 4],
  levels[byte & 15])``: one lookup per stored byte, cache-sized tiles, the constant's
  multiply writing each tile in the compute dtype), then one matmul. W and the matmul are
  the readable path's, so are the numbers, exactly:

      W = T[bytes] · c  (float32 product, rounded once to the compute dtype);  Y = X Wᵀ + b

  The backward pass decodes W again into the same scratch: ``∂L/∂X = ∂L/∂Y · W``.

Where ``torch.compile`` is unavailable or fails, the first call warns once and the layer
decodes + multiplies from then on (no compilation needed there): the readable path's numbers.
"""

from __future__ import annotations

import types
import warnings

import torch

from ..quant import dequantize_absmax
from ..quant.double import DoubleQuantizedAbsmax
from ..quant.fast import byte_table, dequantize_tiled, empty_huge

FUSED_MAX_TOKENS = 16  # at most this many tokens: the fused kernel; more: decode + matmul
FUSED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # the fused kernel sums in float32
FUSED_CHUNK = 4        # tokens per fused call (each chunk size is compiled once)
# bit offset of code k inside a little-endian int32 of 4 bytes (even element = high nibble)
SHIFTS = (4, 0, 12, 8, 20, 16, 28, 24)


def supported(layer) -> bool:
    """The fast path applies to 4-bit CPU layers whose rows are whole blocks of whole words."""
    return (layer.levels.numel() <= 16 and layer.packed.device.type == "cpu"
            and layer.in_features % layer.blocksize == 0 and layer.blocksize % 8 == 0)


STATE = {"compile_ok": True, "warned": False}


def _disable(error: Exception) -> None:
    """Compilation failed: warn once, decode + matmul (no compilation) from now on."""
    STATE["compile_ok"] = False
    if not STATE["warned"]:
        STATE["warned"] = True
        reason = (str(error).splitlines() or [""])[0][:200]
        warnings.warn(f"minilora.qlora fast path unavailable ({type(error).__name__}: {reason}); using the "
                      "decode + matmul path, which gives the readable path's results", RuntimeWarning,
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
    """One preallocated buffer per dtype, shared by every 4-bit layer (grown, never shrunk):
    the largest layer's float matrix, on huge pages, touched once when (re)allocated. Each
    call overwrites it, so layers must not run concurrently in threads of one process."""

    def __init__(self):
        self.buffers: dict = {}

    def get(self, numel: int, dtype: torch.dtype) -> torch.Tensor:
        buf = self.buffers.get(dtype)
        if buf is None or buf.numel() < numel:
            buf = empty_huge((numel,), dtype).zero_()  # touched once, here
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


def decode_into(layer, out: torch.Tensor) -> torch.Tensor:
    """``out`` (out × in, contiguous, any float dtype) ← the layer's weight, by the tiled
    byte table (``minilora.quant.fast.dequantize_tiled``): ``levels[code] · c``, float32
    product rounded once to ``out``'s dtype, i.e. ``layer.dequantized_weight(out.dtype)``."""
    n_blocks = layer.out_features * layer.in_features // layer.blocksize
    dequantize_tiled(layer.packed.view(n_blocks, layer.blocksize // 2), absmax_matrix(layer).reshape(-1),
                     byte_table(layer.levels), out.view(n_blocks, layer.blocksize))
    return out


def scratch_weight(layer, dtype: torch.dtype) -> torch.Tensor:
    """The weight decoded into the shared scratch buffer (valid until the next layer's call)."""
    w = SCRATCH.get(layer.out_features * layer.in_features, dtype).view(layer.out_features, layer.in_features)
    return decode_into(layer, w)


def _fused(layer, x2: torch.Tensor) -> torch.Tensor:
    """(T, in) → (T, out) float32 by the compiled fused kernel, ``FUSED_CHUNK`` tokens a call."""
    words, absmax, levels = _operands(layer)
    # x[t, 8w + k] → [t, k, w], so each of the 8 codes of a word meets a contiguous row of x
    x_by_nibble = x2.float().view(x2.shape[0], -1, 8).transpose(1, 2).contiguous()
    shape = (layer.out_features, layer.in_features, layer.blocksize)
    # FUSED_CHUNK tokens per call: more reductions per loop stop fitting in registers
    return torch.cat([_compiled(fused_kernel, (*shape, min(FUSED_CHUNK, x2.shape[0] - t)), fuse=True)(
                          x_by_nibble[t:t + FUSED_CHUNK], words, absmax, levels)
                      for t in range(0, x2.shape[0], FUSED_CHUNK)])


def linear(layer, x: torch.Tensor, bias) -> torch.Tensor:
    """``x Wᵀ + b``: the fused kernel (few tokens), else decode into the scratch + one matmul
    (also where compilation fails)."""
    x2 = x.reshape(-1, layer.in_features)
    if x2.shape[0] <= FUSED_MAX_TOKENS and x.dtype in FUSED_DTYPES and STATE["compile_ok"]:
        try:
            y = _fused(layer, x2)
        except Exception as e:  # no C++ compiler, unsupported build: decode + matmul instead
            _disable(e)
            return linear(layer, x, bias)
    else:  # the readable path's numbers: same W (decoded into the scratch), same F.linear
        y = torch.nn.functional.linear(x2, scratch_weight(layer, x.dtype), bias)
        return y.view(*x.shape[:-1], layer.out_features)
    if bias is not None:  # added in float32, then one rounding to the compute dtype
        y += bias
    return y.to(x.dtype).view(*x.shape[:-1], layer.out_features)


def linear_t(layer, grad: torch.Tensor) -> torch.Tensor:
    """``∂L/∂X = ∂L/∂Y · W`` with W decoded again into the shared scratch."""
    return grad @ scratch_weight(layer, grad.dtype)


def dequantize_into(layer, dtype=torch.float32, out: torch.Tensor | None = None) -> torch.Tensor:
    """The whole (out × in) weight ``levels[code] · c`` in ``dtype``, written into ``out`` when
    given (a caller-supplied buffer: no fresh allocation and first touch), else into a new
    tensor allocated on huge pages (``minilora.quant.fast.empty_huge``). Same values as
    ``layer.dequantized_weight(dtype)`` (float32 product, then one rounding)."""
    shape = (layer.out_features, layer.in_features)
    if out is None:
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise TypeError(f"dtype must be torch.float32, torch.float16 or torch.bfloat16, got {dtype!r}")
        out = empty_huge(shape, dtype)
    elif (not isinstance(out, torch.Tensor) or tuple(out.shape) != shape or not out.is_contiguous()
          or out.device.type != "cpu" or not out.is_floating_point()):
        raise ValueError(f"out must be a contiguous floating CPU tensor of shape {shape}")
    if not supported(layer):
        return out.copy_(layer.dequantized_weight(out.dtype))
    return decode_into(layer, out)
