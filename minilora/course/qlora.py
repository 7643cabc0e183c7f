"""The QLoRA fine-tunes notebook 07 shares, cached on disk like the LoRA runs of ``runs.py``.

    run = qlora_fine_tune(quant="nf4", lr=2e-3, steps=60)      # LoRA on a frozen NF4 + DQ base
    run = qlora_fine_tune(quant=None, lr=2e-3, steps=60)       # the same LoRA on the float base
    run.test_accuracy, run.test_correct, run.val_accuracy      # as every FineTune
    run.report                                                 # quantize_model's measured bytes

One call = load the packaged MiniLM, quantise every linear layer of the encoder
(``minilora.qlora.quantize_model``; the classifier head stays in float and trains), put LoRA on
``targets``, train the adapters and the head with ``PagedAdamW`` (on a CPU: its non-paged path,
exactly AdamW) and score on validation and test rows. ``quant=None`` keeps the float base, so the
float and quantised runs differ in the base only: same code, adapters, seed, data order.
The trained tensors and the measurements are cached under a key derived from every argument,
the code and the data. (Not built on runs.py, so its cache key does not change with that file.)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from ..checks import check_choice, check_int, check_number
from ..data import DOMAINS, encode, encode_sample, load_snippets
from ..lora import apply_lora, check_lora_args, lora_layers, mark_only_lora_trainable
from ..models import load_model
from ..paged import PagedAdamW
from ..qlora import QUANTS, quantize_model
from ..stats import binomial_se
from ..train import History, train
from .cache import cached_fit
from .runs import _scores

COMPUTE_DTYPE_NAMES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    None: None,
}


@dataclass
class QLoRARun:
    """A trained (Q)LoRA model and what was measured on it (the fields of ``runs.FineTune``),
    plus the base's quantisation and its measured memory report (``None`` for the float base)."""

    kind: str  # "lora" (float base) or "qlora-<quant>"
    model: torch.nn.Module
    tokenizer: object
    history: History
    test_accuracy: float
    test_n: int
    trainable: int
    optimizer_state_bytes: int
    from_cache: bool
    config: dict
    test_correct: tuple
    val_accuracy: float
    val_n: int
    lora_parameters: int
    report: dict | None  # quantize_model(...).to_dict(): measured bytes before/after, bits per parameter

    @property
    def test_se(self) -> float:
        """Binomial standard error of ``test_accuracy``."""
        return binomial_se(self.test_accuracy, self.test_n)


def qlora_fine_tune(
    targets=("query", "value"),
    r=8,
    alpha=16.0,
    *,
    quant="nf4",
    double_quant=True,
    compute_dtype="bfloat16",
    domain="movie",
    model_name=None,
    steps=60,
    lr=2e-3,
    batch_size=8,
    max_length=64,
    checkpointing=False,
    seed=0,
    test_n=None,
    val_n=300,
    device=None,
    use_cache=True,
    progress=None,
) -> QLoRARun:
    """Train LoRA (``targets``, rank ``r``, scale ``alpha/r``) on a frozen base quantised with
    ``quant`` ("nf4", "fp4", "int4", "int8"; None: the float base) and test it (QLoRA §3–§5).

    ``compute_dtype`` (a name: "bfloat16", the paper's; "float32"; None = the input's) is the
    dtype the quantised layers compute in; it is ignored for the float base. ``checkpointing``
    recomputes each block in backward (same numbers, less activation memory). ``test_n``/``val_n``:
    sampled test/validation rows (None: all).
    """
    check_choice(domain, "domain", DOMAINS)
    if quant is not None:
        check_choice(quant, "quant", QUANTS)
    if not isinstance(double_quant, bool):
        raise TypeError(f"double_quant must be True or False, got {double_quant!r}")
    check_choice(compute_dtype, "compute_dtype", tuple(COMPUTE_DTYPE_NAMES))
    check_int(steps, "steps", 1)
    check_number(lr, "lr", 0.0, low_open=True)
    check_int(batch_size, "batch_size", 1)
    check_int(max_length, "max_length", 2, 512)
    check_int(seed, "seed", 0, 2**63 - 1)
    if test_n is not None:
        check_int(test_n, "test_n", 1)
    if val_n is not None:
        check_int(val_n, "val_n", 1)
    for name, value in (("checkpointing", checkpointing), ("use_cache", use_cache)):
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    check_lora_args(r, alpha, 0.0)
    model, tokenizer = load_model(model_name, device=device, seed=seed)
    report = None
    if quant is not None:
        report = quantize_model(
            model, quant=quant, double_quant=double_quant, compute_dtype=COMPUTE_DTYPE_NAMES[compute_dtype]
        ).to_dict()
        report["layers"] = list(report["layers"])
    apply_lora(model, targets, r=r, alpha=alpha, seed=seed)
    trainable = mark_only_lora_trainable(model)
    lora_parameters = sum(m.lora_A.numel() + m.lora_B.numel() for m in lora_layers(model).values())
    train_data = encode(load_snippets(domain, "train"), tokenizer, max_length)
    test_data = encode_sample(domain, "test", tokenizer, test_n, max_length)
    val_data = encode_sample(domain, "val", tokenizer, val_n, max_length)
    config = dict(
        targets=list(targets) if not isinstance(targets, str) else targets,
        r=r,
        alpha=alpha,
        quant=quant,
        double_quant=double_quant if quant else None,
        compute_dtype=compute_dtype if quant else None,
        domain=domain,
        model=model_name,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        max_length=max_length,
        checkpointing=checkpointing,
        seed=seed,
        test_n=len(test_data),
        val_n=len(val_data),
        device=str(next(model.parameters()).device),
    )

    def fit():
        made = []

        def paged_adamw(params):
            with warnings.catch_warnings():  # without CUDA it says it keeps the states in ordinary memory
                warnings.simplefilter("ignore", RuntimeWarning)
                made.append(PagedAdamW(params, lr=lr, weight_decay=0.01))
            return made[0]

        hist = train(
            model,
            train_data,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            optimizer=paged_adamw,
            checkpointing=checkpointing,
            progress=progress,
        )
        return {
            "history": hist.to_dict(),
            "optimizer_state_bytes": made[0].state_bytes(),
            "paging": made[0].paging,
            **_scores(model, val_data, test_data),
        }

    name = f"qlora-{quant or 'float'}-{domain}-r{r}"
    meta, hit = cached_fit(name, config, model, fit, use_cache=use_cache)
    return QLoRARun(
        "lora" if quant is None else f"qlora-{quant}",
        model,
        tokenizer,
        History(**meta["history"]),
        meta["test_accuracy"],
        len(test_data),
        trainable,
        meta["optimizer_state_bytes"],
        hit,
        config,
        tuple(meta["test_correct"]),
        meta["val_accuracy"],
        len(val_data),
        lora_parameters,
        report,
    )
