"""Paged optimizers (QLoRA §3): optimizer states in CUDA unified memory, paged to the host
when the GPU runs short, so a memory spike does not end the run.

Read in this order:
  cuda.py       the few CUDA runtime calls unified memory needs, through ctypes
  optimizer.py  managed tensors (managed_empty, prefetch, host_view) and PagedAdamW

Without CUDA the same API keeps the states in ordinary memory and computes exactly what
minilora.AdamW computes. The architecture of the whole library: docs/architecture.md.
"""

from .cuda import CudaRuntime, CudaUnavailableError, load_runtime, runtime_or_reason, unavailable_reason
from .optimizer import (
    MIN_PAGED_NUMEL,
    ManagedAllocation,
    PagedAdamW,
    PageManager,
    host_view,
    managed_empty,
    prefetch,
)

__all__ = [
    "MIN_PAGED_NUMEL", "CudaRuntime", "CudaUnavailableError", "ManagedAllocation", "PageManager",
    "PagedAdamW", "host_view", "load_runtime", "managed_empty", "prefetch", "runtime_or_reason",
    "unavailable_reason",
]
