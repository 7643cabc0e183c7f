"""A frozen linear layer stored in 4 (or 8) bits: QLoRA's base layer (Dettmers et al. 2023, §3).

    Y = X · dequant(c₁, c₂, W_q)ᵀ + b            QLoRA eq. (5), in ``compute_dtype``
    dequant(c₁, c₂, W_q) = levels[W_q] · (dequant(c₁, c₂))   first the constants, then the weight

The layer keeps only the packed codes (two per byte) and the (double-quantised) constants,
never the float weight. Its backward pass gives the input its gradient
``∂L/∂X = ∂L/∂Y · dequant(W)`` and the weight none (it is frozen: LoRA on top trains); the
dequantised weight is not saved for backward but recomputed there; ∂L/∂X does not need X
either, so the layer itself saves nothing for backward (LoRA on top saves its own input).

Two paths compute the same numbers (tested against each other):
  "readable"  ``minilora.quant.dequantize`` the whole matrix, then ``F.linear``
  "fast"      minilora.qlora.fast (CPU): a fused torch.compile kernel for few tokens; for many,
              W decoded by a byte table into one scratch buffer shared by all layers, then one
              matmul (the readable numbers exactly); the backward decodes into it again
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..checks import ArgumentTypeError, check_choice
from ..quant import (
    DoubleQuantizedAbsmax,
    QuantizedTensor,
    dequantize,
    fp4_levels,
    int4_levels,
    nf4_levels,
    quantize_blockwise,
)
from ..quant.codes import check_blocksize
from . import fast

LEVELS = {"nf4": nf4_levels, "fp4": fp4_levels, "int4": int4_levels,
          # blockwise absmax int8: code = round(127 · x / c), 255 evenly spaced levels with 0
          "int8": lambda: torch.arange(-127, 128, dtype=torch.float32) / 127}
QUANTS_4BIT = ("nf4", "fp4", "int4")
COMPUTE_DTYPES = (None, torch.float32, torch.float16, torch.bfloat16)
IMPLS = ("auto", "fast", "readable")


class _QuantizedMatmul(torch.autograd.Function):
    """``Y = X Wᵀ + b`` with W decoded from its codes; backward recomputes W (never saved).

    ∂L/∂X = ∂L/∂Y · W       (the only gradient a frozen base passes on, to LoRA below it)
    ∂L/∂b = Σ_tokens ∂L/∂Y  (only if someone unfroze the bias)
    """

    @staticmethod
    def forward(ctx, x, bias, layer, impl):
        ctx.layer, ctx.impl = layer, impl
        ctx.bias_dtype = None if bias is None else bias.dtype
        return layer._matmul(x, bias, impl)

    @staticmethod
    def backward(ctx, grad):
        layer = ctx.layer
        grad_x = layer._matmul_t(grad, ctx.impl) if ctx.needs_input_grad[0] else None
        grad_b = None
        if ctx.needs_input_grad[1]:
            grad_b = grad.reshape(-1, grad.shape[-1]).sum(0).to(ctx.bias_dtype)
        return grad_x, grad_b, None, None


class QuantizedLinear(nn.Module):
    """The common body of ``Linear4bit`` and ``Linear8bit``: codes and constants as buffers
    (so ``state_dict``, ``.to(device)`` and memory counts see them), bias kept as is."""

    linear_like = True  # stands in for an nn.Linear (minilora.lora.inject.is_linear_like)
    quantized_base = True  # LoRA may wrap it, never merge into it (minilora.lora.layer.is_quantized_base)

    def __init__(self, base: nn.Linear, quant: str, double_quant: bool, compute_dtype, blocksize: int,
                 impl: str = "auto"):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be a torch.nn.Linear, got {type(base).__name__}")
        check_choice(quant, "quant", tuple(LEVELS))
        if not isinstance(double_quant, bool):
            raise ArgumentTypeError(f"double_quant must be True or False, got {double_quant!r}")
        check_choice(compute_dtype, "compute_dtype", COMPUTE_DTYPES)
        check_blocksize(blocksize)
        check_choice(impl, "impl", IMPLS)
        weight = base.weight.detach()
        if not bool(torch.isfinite(weight).all()):
            raise ValueError("base.weight has NaN/inf entries: they have no 4-bit code")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.quant, self.double_quant, self.blocksize = quant, double_quant, blocksize
        self.compute_dtype, self.impl, self.weight_dtype = compute_dtype, impl, weight.dtype
        q = quantize_blockwise(weight, LEVELS[quant](), blocksize, double_quant=double_quant)
        self.register_buffer("packed", q.packed)
        if double_quant:
            self.register_buffer("absmax_codes", q.absmax.codes)
            self.register_buffer("absmax_scale", q.absmax.scale)
            self.register_buffer("absmax_offset", q.absmax.offset.reshape(()))
            self.register_buffer("absmax_levels", q.absmax.levels, persistent=False)
            self.double_blocksize = q.absmax.blocksize
        else:
            self.register_buffer("absmax", q.absmax)
        self.register_buffer("levels", q.levels, persistent=False)
        self.bias = None
        if base.bias is not None:
            self.bias = nn.Parameter(base.bias.detach().clone(), requires_grad=False)

    # ---- the stored weight -------------------------------------------------------------
    def quantized(self) -> QuantizedTensor:
        """The weight as a (validated) ``QuantizedTensor`` over this layer's buffers."""
        absmax = (DoubleQuantizedAbsmax(self.absmax_codes, self.absmax_scale, self.absmax_offset,
                                        self.absmax_levels, self.double_blocksize)
                  if self.double_quant else self.absmax)
        return QuantizedTensor(self.packed, absmax, torch.Size((self.out_features, self.in_features)),
                               self.weight_dtype, self.blocksize, self.levels)

    def dequantized_weight(self, dtype=None) -> torch.Tensor:
        """``W ≈ levels[code] · c`` as a float tensor (out × in) in ``dtype`` (default: the
        original weight's dtype): the readable path's first step."""
        w = dequantize(self.quantized())
        return w if dtype is None else w.to(dtype)

    @property
    def weight(self) -> torch.Tensor:
        """The dequantised weight (a fresh tensor each call; assigning to it is not possible):
        for code that reads ``layer.weight`` of a Linear, e.g. shapes and dtypes."""
        return self.dequantized_weight()

    @property
    def nbytes(self) -> int:
        """Stored bytes of the frozen weight: codes + constants (tables excluded, as in
        ``QuantizedTensor.nbytes``); the bias is not included."""
        return self.quantized().nbytes

    def bits_per_parameter(self) -> float:
        """``8 · nbytes / (d_out · d_in)``: ≈ 4.127 for NF4 + double quantisation (QLoRA §3)."""
        return 8.0 * self.nbytes / (self.in_features * self.out_features)

    # ---- forward / backward ------------------------------------------------------------
    def _dtype(self, x: torch.Tensor) -> torch.dtype:
        return x.dtype if self.compute_dtype is None else self.compute_dtype

    def _use_fast(self, impl: str) -> bool:
        return impl != "readable" and fast.supported(self)

    def _matmul(self, x: torch.Tensor, bias, impl: str) -> torch.Tensor:
        """``x Wᵀ + b`` in the compute dtype (x already cast to it)."""
        b = None if bias is None else bias.to(x.dtype)
        if self._use_fast(impl):
            return fast.linear(self, x, b)
        # readable: decode the whole matrix (float32 product, cast), then one F.linear
        return F.linear(x, self.dequantized_weight(x.dtype), b)

    def _matmul_t(self, grad: torch.Tensor, impl: str) -> torch.Tensor:
        """``∂L/∂X = ∂L/∂Y · W`` with W decoded again (recomputed, not saved)."""
        if self._use_fast(impl):
            return fast.linear_t(self, grad)
        return grad @ self.dequantized_weight(grad.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating tensor, got {getattr(x, 'dtype', type(x).__name__)}")
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x must have {self.in_features} features in its last dimension, got "
                             f"shape {tuple(x.shape)}")
        # compute in compute_dtype, return the input's dtype (bitsandbytes' Linear4bit does the
        # same: a bf16-compute layer inside an fp32 model keeps the model's dtype between layers)
        out = _QuantizedMatmul.apply(x.to(self._dtype(x)), self.bias, self, self.impl)
        return out.to(x.dtype)

    def extra_repr(self) -> str:
        dtype = "input" if self.compute_dtype is None else str(self.compute_dtype).removeprefix("torch.")
        return (f"in_features={self.in_features}, out_features={self.out_features}, quant={self.quant}, "
                f"double_quant={self.double_quant}, blocksize={self.blocksize}, compute_dtype={dtype}, "
                f"bias={self.bias is not None}")


class Linear4bit(QuantizedLinear):
    """A frozen ``nn.Linear`` in 4 bits (QLoRA §3): ``quant`` "nf4" (NormalFloat, the default),
    "fp4" or "int4"; ``double_quant`` stores the constants in 8 bits (≈ 4.127 bits/param for
    NF4, 4.5 without); ``compute_dtype`` the dtype the product is computed in (bf16 in the
    paper; None: the input's); the output has the input's dtype, as bitsandbytes'.
    ``impl``: "auto"/"fast" use ``minilora.qlora.fast`` where it applies, "readable" always
    dequantises the whole matrix and calls ``F.linear``."""

    def __init__(self, base: nn.Linear, quant: str = "nf4", double_quant: bool = True, compute_dtype=None,
                 blocksize: int = 64, impl: str = "auto"):
        check_choice(quant, "quant", QUANTS_4BIT)
        super().__init__(base, quant, double_quant, compute_dtype, blocksize, impl)


class Linear8bit(QuantizedLinear):
    """A frozen ``nn.Linear`` in blockwise absmax int8 (255 levels ``k/127``, one constant per
    block): the 8-bit base of the "16-, 8- and 4-bit adapters" comparison (QLoRA §5).
    Same arguments as ``Linear4bit`` (no ``quant``); always the readable path."""

    def __init__(self, base: nn.Linear, double_quant: bool = False, compute_dtype=None, blocksize: int = 64,
                 impl: str = "auto"):
        super().__init__(base, "int8", double_quant, compute_dtype, blocksize, impl)
