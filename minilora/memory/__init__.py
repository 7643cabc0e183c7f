"""Where the memory of fine-tuning goes: weights, gradients, optimizer states, activations.

Read in this order:
  measured.py  one real training step, measured tensor by tensor (saved activations per block,
               gradients, AdamW states), and its memory timeline; on CUDA the allocator's own
  estimate.py  the paper-scale formula (LLaMA 7B–65B: full 16-bit vs LoRA vs QLoRA, QLoRA §1)

The architecture of the whole library: docs/architecture.md.
"""

from .estimate import (
    ADAM_STATE_BYTES,
    GB,
    GPU_SIZES_GB,
    LLAMA,
    METHODS,
    NF4_DQ_BITS,
    LlamaShape,
    activation_bytes,
    finetune_memory,
    memory_summary,
    paper_claims,
)
from .measured import (
    PARTS,
    CudaProbe,
    StepMeasurement,
    Timeline,
    default_blocks,
    measure_step,
    measured_step_timeline,
    model_bytes,
    step_timeline,
    storage_bytes,
)

__all__ = [
    "ADAM_STATE_BYTES", "GB", "GPU_SIZES_GB", "LLAMA", "METHODS", "NF4_DQ_BITS", "PARTS", "CudaProbe",
    "LlamaShape", "StepMeasurement", "Timeline", "activation_bytes", "default_blocks", "finetune_memory",
    "measure_step", "measured_step_timeline", "memory_summary", "model_bytes", "paper_claims",
    "step_timeline", "storage_bytes",
]
