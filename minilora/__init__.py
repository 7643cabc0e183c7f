"""minilora: LoRA, AdaLoRA and QLoRA from scratch in readable PyTorch.

Public names only; each lives in the module named for its concept. Importing minilora
needs torch, numpy and scipy alone (transformers, safetensors, matplotlib and ipywidgets
are imported where a function needs them).
"""

__version__ = "0.1.0"

from .adamw import AdamW
from .data import DOMAINS, Snippet, encode, load_snippets
from .delta import truncated_update, weight_deltas
from .lora import (
    LoRALinear,
    apply_lora,
    load_adapter,
    lora_layers,
    lora_parameter_count,
    mark_only_lora_trainable,
    save_adapter,
)
from .models import load_model, pick_device
from .paged import PagedAdamW, managed_empty, prefetch
from .quant import (
    DoubleQuantizedAbsmax,
    QuantizedTensor,
    bits_per_parameter,
    dequantize,
    dynamic_map,
    fp4_levels,
    fp8_e4m3_levels,
    int4_levels,
    nf4_levels,
    normal_float_levels,
    quantize_blockwise,
)
from .rank import (
    amplification_factor,
    effective_rank,
    energy_rank,
    singular_vectors,
    spectrum,
    subspace_similarity,
    subspace_similarity_grid,
    truncate,
)
from .train import binomial_se, compare, evaluate, predict, train

__all__ = [
    "AdamW", "DOMAINS", "DoubleQuantizedAbsmax", "LoRALinear", "PagedAdamW", "QuantizedTensor",
    "Snippet", "amplification_factor", "apply_lora", "binomial_se", "bits_per_parameter", "compare",
    "dequantize", "dynamic_map", "effective_rank", "encode", "energy_rank", "evaluate", "fp4_levels",
    "fp8_e4m3_levels", "int4_levels", "load_adapter", "load_model", "load_snippets", "lora_layers",
    "lora_parameter_count", "managed_empty", "mark_only_lora_trainable", "nf4_levels",
    "normal_float_levels", "pick_device", "predict", "prefetch", "quantize_blockwise", "save_adapter",
    "singular_vectors", "spectrum", "subspace_similarity", "subspace_similarity_grid", "train",
    "truncate", "truncated_update", "weight_deltas",
]
