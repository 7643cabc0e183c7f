"""Paper-scale memory estimator: what fine-tuning a LLaMA model needs on the GPU.

QLoRA (Dettmers et al. 2023, §1): "regular 16-bit finetuning of a LLaMA 65B parameter model
requires more than 780 GB of GPU memory"; QLoRA brings it "to <48GB". We rebuild both from
an explicit formula (bytes per parameter × parameters counted from the architecture):

    full 16-bit:  N·(2 + 2 + 8)           bf16 weights, bf16 gradients, fp32 Adam m and v
    LoRA 16-bit:  N·2 + N_lora·(2 + 2 + 8)  frozen bf16 base, adapters trained as above
    QLoRA:        N_lin·(4 + 8/64 + 32/(64·256))/8 + N_rest·2 + N_lora·(2 + 2 + 8)
                  (NF4 with double quantisation; embeddings, head and norms stay bf16)
    activations:  Korthikanti et al. 2022 eq. 1, per layer s·b·h·(34 + 5·a·s/h) bytes in 16 bit;
                  with gradient checkpointing 2·s·b·h per layer + one layer recomputed;
                  plus the fp32 logits s·b·V·4

Assumptions (stated, not hidden): no fp32 master copy of the weights (mixed precision with
one would add 4 bytes per parameter: > 1 TB for 65B); LoRA r = 64 on every linear layer of
every block, as QLoRA trains; Adam states fp32; 1 GB = 10⁹ bytes. The measured MiniLM
numbers (minilora.memory.measured) check the same bookkeeping at small scale.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..adamw import ADAMW_STATE_BYTES_PER_PARAMETER
from ..checks import ArgumentTypeError, check_choice, check_int

GB = 1e9
METHODS = ("full", "lora", "qlora")
NF4_DQ_BITS = 4 + 8 / 64 + 32 / (64 * 256)  # 4-bit codes + 8-bit absmax per 64 + fp32 constant per 256 blocks
ADAM_STATE_BYTES = ADAMW_STATE_BYTES_PER_PARAMETER  # m and v in fp32
GPU_SIZES_GB = (24, 48, 80)
MAX_TOKENS = 2**24  # seq_len and batch bounds: beyond this the estimate means nothing


@dataclass(frozen=True)
class LlamaShape:
    """A LLaMA-style decoder: untied embeddings/head, SwiGLU MLP (3 matrices), RMSNorms."""

    name: str
    vocab: int
    d_model: int
    n_layers: int
    d_ff: int
    n_heads: int

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise TypeError(f"name must be a str, got {self.name!r}")
        for field in ("vocab", "d_model", "n_layers", "d_ff", "n_heads"):
            check_int(getattr(self, field), field, 1)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")

    def linear_shapes(self) -> list[tuple[int, int]]:
        """(d_in, d_out) of the 7 linear layers of one block: q, k, v, o, gate, up, down."""
        d, f = self.d_model, self.d_ff
        return [(d, d)] * 4 + [(d, f), (d, f), (f, d)]

    def parameter_counts(self) -> dict:
        """{"linear": block matrices, "rest": embeddings + head + norms, "total"}."""
        linear = self.n_layers * sum(i * o for i, o in self.linear_shapes())
        rest = 2 * self.vocab * self.d_model + (2 * self.n_layers + 1) * self.d_model
        return {"linear": linear, "rest": rest, "total": linear + rest}

    def lora_parameters(self, r=64) -> int:
        """r·(d_in + d_out) per adapted matrix, every linear layer of every block."""
        check_int(r, "r", 1, self.d_model, f" (LoRA's rank is at most d_model of {self.name})")
        return self.n_layers * sum(r * (i + o) for i, o in self.linear_shapes())


LLAMA = {
    "7B": LlamaShape("LLaMA-7B", 32000, 4096, 32, 11008, 32),
    "13B": LlamaShape("LLaMA-13B", 32000, 5120, 40, 13824, 40),
    "33B": LlamaShape("LLaMA-33B", 32000, 6656, 60, 17920, 52),
    "65B": LlamaShape("LLaMA-65B", 32000, 8192, 80, 22016, 64),
}


def _shape(shape) -> LlamaShape:
    if isinstance(shape, str):
        check_choice(shape, "shape", tuple(LLAMA))
        return LLAMA[shape]
    if not isinstance(shape, LlamaShape):
        raise ArgumentTypeError(f"shape must be one of {tuple(LLAMA)} or a LlamaShape, got {shape!r}")
    return shape


def _check_bool(value, name):
    if not isinstance(value, bool):
        raise ArgumentTypeError(f"{name} must be True or False, got {value!r}")


def activation_bytes(shape: LlamaShape, seq_len=512, batch=1, checkpointing=True) -> float:
    """Saved activations (Korthikanti et al. 2022, eq. 1), 16-bit, plus fp32 logits."""
    shape = _shape(shape)
    check_int(seq_len, "seq_len", 1, MAX_TOKENS)
    check_int(batch, "batch", 1, MAX_TOKENS)
    _check_bool(checkpointing, "checkpointing")
    s, b, h, a = seq_len, batch, shape.d_model, shape.n_heads
    per_layer = s * b * h * (34 + 5 * a * s / h)
    blocks = (shape.n_layers * 2 * s * b * h + per_layer) if checkpointing else shape.n_layers * per_layer
    return blocks + s * b * shape.vocab * 4


def finetune_memory(shape: LlamaShape | str, method="qlora", seq_len=512, batch=1, checkpointing=True,
                    r=None, paged=False) -> dict:
    """GPU bytes by part for one fine-tuning step of ``shape`` (see the module docstring).

    ``paged=True`` moves the optimizer states to host RAM while activations peak (what a
    paged optimizer allows): they are then listed under ``"host (paged states)"`` and left
    out of ``"total"``. ``r=None``: QLoRA's 64, or d_model for a smaller model. Returns bytes
    per part, ``"total"`` and the parameter counts.
    """
    shape = _shape(shape)
    check_choice(method, "method", METHODS)
    check_int(seq_len, "seq_len", 1, MAX_TOKENS)
    check_int(batch, "batch", 1, MAX_TOKENS)
    r = min(64, shape.d_model) if r is None else r
    check_int(r, "r", 1, shape.d_model, f" (LoRA's rank is at most d_model of {shape.name})")
    _check_bool(paged, "paged")
    n = shape.parameter_counts()
    trainable = n["total"] if method == "full" else shape.lora_parameters(r)
    if method == "qlora":
        weights = n["linear"] * NF4_DQ_BITS / 8 + n["rest"] * 2
    else:
        weights = n["total"] * 2
    if method != "full":
        weights += trainable * 2  # the bf16 adapters
    parts = {"weights": float(weights), "gradients": trainable * 2.0,
             "optimizer states": trainable * float(ADAM_STATE_BYTES),
             "activations": activation_bytes(shape, seq_len, batch, checkpointing)}
    host = 0.0
    if paged:
        host, parts["optimizer states"] = parts["optimizer states"], 0.0
    return {**parts, "total": sum(parts.values()), "host (paged states)": host,
            "parameters": n["total"], "trainable": trainable, "model": shape.name, "method": method}


def paper_claims(seq_len=512, batch=1) -> dict:
    """The two numbers of QLoRA §1 for LLaMA-65B: full 16-bit fine-tuning and QLoRA, in GB."""
    full = finetune_memory("65B", "full", seq_len, batch)["total"] / GB
    qlora = finetune_memory("65B", "qlora", seq_len, batch)["total"] / GB
    return {"full_16bit_gb": full, "qlora_gb": qlora, "claim_full_gb": 780, "claim_qlora_gb": 48,
            "full_exceeds_780": full > 780, "qlora_below_48": qlora < 48}


def memory_summary(model="65B", method="qlora", seq_len=512, batch=1, checkpointing=True,
                   paged=False) -> dict:
    """``finetune_memory`` plus GB totals and the smallest GPU of ``GPU_SIZES_GB`` it fits
    (``fits_gb``; None when none does): what notebook 06's memory calculator shows."""
    est = finetune_memory(model, method, seq_len=seq_len, batch=batch, checkpointing=checkpointing,
                          paged=paged)
    fits = next((g for g in GPU_SIZES_GB if est["total"] <= g * GB), None)
    return {**est, "total_gb": est["total"] / GB, "host_gb": est["host (paged states)"] / GB,
            "fits_gb": fits}
