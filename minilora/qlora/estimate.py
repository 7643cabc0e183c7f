"""The memory calculator of notebook 07: what fine-tuning needs on the GPU, by part, for a
model preset, a method and the QLoRA knobs (bits, double quantisation, rank, paging, batch,
sequence length, checkpointing). Computed from a formula, not measured:

    weights      full / LoRA: N · 2 bytes (bf16)
                 QLoRA: N_lin · (bits + constants)/8 + N_rest · 2,
                        constants = 32/64 bits (fp32 per block of 64) or, double-quantised,
                        8/64 + 32/(64·256)                                    (QLoRA §3)
    adapters     N_lora · 2 (bf16), N_lora = Σ r·(d_in + d_out) over every block matrix
    gradients    trainable · 2;   optimizer states  trainable · 8 (Adam m, v in fp32)
    activations  minilora.memory.activation_bytes (Korthikanti et al. 2022, eq. 1)

``paged=True`` moves the optimizer states to host RAM (what PagedAdamW allows when memory
runs short). The LLaMA presets reuse minilora.memory's shapes; "MiniLM" is this course's
model (BERT: 4 attention matrices and a 2-matrix MLP per block, 30,522-token vocabulary).
"""

from __future__ import annotations

from ..checks import ArgumentTypeError, check_choice, check_int
from ..memory import ADAM_STATE_BYTES, GB, GPU_SIZES_GB, LLAMA, LlamaShape, activation_bytes

MINILM = LlamaShape("MiniLM-L6", 30522, 384, 6, 1536, 12)
PRESETS = ("MiniLM", *LLAMA)
METHODS = ("full", "lora", "qlora")
BITS = (4, 8)
CARDS_GB = tuple(sorted({24, *GPU_SIZES_GB}))  # the cards drawn and checked: 24 / 48 / 80 GB


def _shape(model: str) -> tuple[LlamaShape, list[tuple[int, int]]]:
    check_choice(model, "model", PRESETS)
    if model == "MiniLM":
        d, f = MINILM.d_model, MINILM.d_ff
        return MINILM, [(d, d)] * 4 + [(d, f), (f, d)]
    shape = LLAMA[model]
    return shape, shape.linear_shapes()


def calculator_memory(model="65B", method="qlora", r=64, bits=4, double_quant=True, paged=False, batch=1,
                      seq_len=512, checkpointing=True) -> dict:
    """GPU bytes by part (module docstring), ``"total"`` (GPU), ``"host (paged states)"`` and
    the smallest card of 24/48/80 GB it fits (``fits_gb``, None if none)."""
    shape, matrices = _shape(model)
    check_choice(method, "method", METHODS)
    check_int(r, "r", 1, shape.d_model, f" (at most d_model of {shape.name})")
    check_choice(bits, "bits", BITS)
    for name, value in (("double_quant", double_quant), ("paged", paged), ("checkpointing", checkpointing)):
        if not isinstance(value, bool):
            raise ArgumentTypeError(f"{name} must be True or False, got {value!r}")
    n_lin = shape.n_layers * sum(i * o for i, o in matrices)
    n_rest = 2 * shape.vocab * shape.d_model + (2 * shape.n_layers + 1) * shape.d_model
    n_lora = shape.n_layers * sum(r * (i + o) for i, o in matrices)
    if method == "qlora":
        # bits + constants per weight: 32/64 (fp32 absmax per 64) or 8/64 + 32/(64·256) (DQ)
        constants = 8 / 64 + 32 / (64 * 256) if double_quant else 32 / 64
        weights = n_lin * (bits + constants) / 8 + n_rest * 2
    else:
        weights = (n_lin + n_rest) * 2.0
    trainable = n_lin + n_rest if method == "full" else n_lora
    parts = {"weights": float(weights), "adapters": 0.0 if method == "full" else n_lora * 2.0,
             "gradients": trainable * 2.0, "optimizer states": trainable * float(ADAM_STATE_BYTES),
             "activations": activation_bytes(shape, seq_len, batch, checkpointing)}
    host = 0.0
    if paged:
        host, parts["optimizer states"] = parts["optimizer states"], 0.0
    total = sum(parts.values())
    fits = next((g for g in CARDS_GB if total <= g * GB), None)
    return {**parts, "total": total, "host (paged states)": host, "total_gb": total / GB,
            "host_gb": host / GB, "fits_gb": fits, "parameters": n_lin + n_rest, "trainable": trainable,
            "model": shape.name, "method": method}
