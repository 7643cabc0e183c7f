"""QLoRA (Dettmers et al. 2023): LoRA trained through a frozen 4-bit base.

    Y = X · dequant(c₁, c₂, W_NF4)ᵀ + s · X L₁ L₂          QLoRA eq. (5)

Read in this order:
  layer.py   Linear4bit / Linear8bit: codes + constants only; backward recomputes the weight
  fast.py    the fast CPU forward: a fused kernel for few tokens, tiles for many
  model.py   quantize_model: every nn.Linear of a model to 4 (or 8) bits, with a memory report
  estimate.py  the memory calculator: GPU bytes by part for a preset, method, bits, rank, paging

The architecture of the whole library: docs/architecture.md.
"""

from .estimate import BITS, CARDS_GB, PRESETS, calculator_memory
from .fast import FUSED_MAX_TOKENS, dequantize_into
from .layer import COMPUTE_DTYPES, LEVELS, QUANTS_4BIT, Linear4bit, Linear8bit, QuantizedLinear
from .model import QUANTS, MemoryReport, quantize_model, quantized_layers

__all__ = [
    "BITS", "CARDS_GB", "PRESETS", "calculator_memory",
    "COMPUTE_DTYPES", "FUSED_MAX_TOKENS", "LEVELS", "QUANTS", "QUANTS_4BIT", "Linear4bit",
    "Linear8bit", "MemoryReport", "QuantizedLinear", "dequantize_into", "quantize_model", "quantized_layers",
]
