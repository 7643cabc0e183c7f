"""LoRA (Hu et al. 2021): a frozen weight plus a trainable low-rank update.

    h = W0 x + (α/r) · B A x,   A: r × d_in (random), B: d_out × r (zero at the start)

Read in this order:
  layer.py        LoRALinear: the update, merge/unmerge, its arguments     (LoRA §4.1)
  inject.py       find modules by name, swap them for LoRA layers, freeze the rest (§4.2, §7.1)
  peft_format.py  save/load adapters in peft's folder format, so either library reads the other's
  bottleneck.py   Houlsby's adapter layers, the baseline LoRA is compared with: y + up(gelu(down(y)))

The architecture of the whole library: docs/architecture.md.
"""

from .bottleneck import (
    HOULSBY_TARGETS,
    BottleneckAdapter,
    apply_bottleneck,
    bottleneck_layers,
    mark_only_bottleneck_trainable,
)
from .inject import (
    apply_lora,
    linear_names,
    lora_costs,
    lora_layers,
    lora_parameter_count,
    mark_only_lora_trainable,
    match_modules,
    replace_module,
)
from .layer import INITS, LoRALinear, check_lora_args, lora_scaling
from .peft_format import load_adapter, read_adapter, save_adapter

__all__ = [
    "HOULSBY_TARGETS", "INITS", "BottleneckAdapter", "LoRALinear", "apply_bottleneck", "apply_lora",
    "bottleneck_layers", "check_lora_args", "linear_names", "load_adapter", "lora_costs",
    "lora_layers", "lora_parameter_count", "lora_scaling", "mark_only_bottleneck_trainable",
    "mark_only_lora_trainable", "match_modules", "read_adapter", "replace_module", "save_adapter",
]
