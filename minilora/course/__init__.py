"""Course plumbing: what the notebooks share, not an idea of the papers.

  cache.py       the on-disk cache (keys derived from arguments, code and data) and cached_fit
  runs.py        the shared fine-tunes: baselines (full, head-only) and LoRA runs; recipe selection
                 on the validation split; interleaved inference timing
  adalora.py     the AdaLoRA runs of notebook 03 (rank record, budget, orthogonality gap)
  qlora.py       the QLoRA runs of notebook 07 (LoRA on a float / NF4 / FP4 / INT4 / INT8 base)
  gpu_record.py  the recorded output of scripts/gpu_check.py in docs/gpu.md

The ideas never import this package (docs/architecture.md, the import rules).
"""

from .adalora import ALL_MATRICES, AdaLoRARun, adalora_fine_tune
from .cache import cache_dir, cache_key, cached_fit, canonical, import_closure, load_or_compute
from .gpu_record import default_record_path, format_record, parse_record, read_record, write_record
from .qlora import QLoRARun, qlora_fine_tune
from .runs import (
    KINDS,
    FineTune,
    Selection,
    fine_tune_baseline,
    freeze_all_but_head,
    inference_latency,
    lora_fine_tune,
    pooled_features,
    select_on_validation,
)

__all__ = [
    "ALL_MATRICES", "AdaLoRARun", "adalora_fine_tune",
    "KINDS", "FineTune", "Selection", "cache_dir", "cache_key", "cached_fit", "canonical",
    "default_record_path", "fine_tune_baseline", "format_record", "freeze_all_but_head", "import_closure",
    "inference_latency",
    "load_or_compute", "lora_fine_tune", "parse_record", "pooled_features", "read_record",
    "select_on_validation", "write_record",
    "QLoRARun", "qlora_fine_tune",
]
