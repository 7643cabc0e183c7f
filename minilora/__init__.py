"""minilora: LoRA, AdaLoRA and QLoRA from scratch in readable PyTorch.

One package per idea; this file gathers the public names, grouped by idea. Importing
minilora needs torch, numpy and scipy alone (transformers, safetensors, matplotlib and
ipywidgets are imported where a function needs them). The map of the library and its
import rules: docs/architecture.md.
"""

__version__ = "0.1.0"

# AdaLoRA: SVD-form adapters pruned to a rank budget by importance (AdaLoRA §3)
from .adalora import (
    RankAllocator,
    SVDLinear,
    apply_adalora,
    budget_schedule,
    orthogonal_regularization,
)

# ground floor: model, data, training loop, optimizer, statistics
from .adamw import AdamW
from .data import DOMAINS, Snippet, encode, load_snippets

# LoRA: a frozen weight plus a trainable low-rank update (LoRA §4)
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

# paged optimizers: optimizer states in CUDA unified memory (QLoRA §3)
from .paged import PagedAdamW, managed_empty, prefetch

# quantisation: NF4/FP4/INT4 tables, blockwise absmax codes, double quantisation (QLoRA §3)
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

# intrinsic rank: spectra of weight updates, truncation, subspace similarity (LoRA §4, §7)
from .rank import (
    amplification_factor,
    effective_rank,
    energy_rank,
    singular_vectors,
    spectrum,
    subspace_similarity,
    subspace_similarity_grid,
    truncate,
    truncated_update,
    weight_deltas,
)
from .stats import binomial_se, compare, mcnemar, paired_bootstrap
from .train import evaluate, predict, train

__all__ = [
    # ground floor
    "AdamW", "DOMAINS", "Snippet", "binomial_se", "compare", "encode", "evaluate", "load_model",
    "load_snippets", "mcnemar", "paired_bootstrap", "pick_device", "predict", "train",
    # AdaLoRA
    "RankAllocator", "SVDLinear", "apply_adalora", "budget_schedule", "orthogonal_regularization",
    # LoRA
    "LoRALinear", "apply_lora", "load_adapter", "lora_layers", "lora_parameter_count",
    "mark_only_lora_trainable", "save_adapter",
    # intrinsic rank
    "amplification_factor", "effective_rank", "energy_rank", "singular_vectors", "spectrum",
    "subspace_similarity", "subspace_similarity_grid", "truncate", "truncated_update", "weight_deltas",
    # quantisation
    "DoubleQuantizedAbsmax", "QuantizedTensor", "bits_per_parameter", "dequantize", "dynamic_map",
    "fp4_levels", "fp8_e4m3_levels", "int4_levels", "nf4_levels", "normal_float_levels",
    "quantize_blockwise",
    # paged optimizers
    "PagedAdamW", "managed_empty", "prefetch",
]
