"""The AdaLoRA fine-tunes notebook 03 shares, cached on disk like the LoRA runs of ``runs.py``.

    run = adalora_fine_tune(init_r=8, target_r=4, steps=100, lr=2e-3)
    run.test_accuracy, run.test_correct, run.val_accuracy      # as every FineTune
    run.rank_steps, run.rank_history, run.budget               # kept ranks over training
    run.kept, run.orth_steps, run.orth_gap     # final pattern; ‖PᵀP−I‖ + ‖QQᵀ−I‖ over training

One call = load the packaged MiniLM, wrap ``targets`` in SVDLinear (``minilora.adalora``), train
with minilora's AdamW and loss + γ·R(P, Q), run the ``RankAllocator`` after every optimizer step,
and score on validation and test rows. The trained tensors, the measurements and the rank
history are cached under a key derived from every argument, the code and the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..adalora import RankAllocator, apply_adalora, orthogonal_regularization, svd_layers
from ..adamw import AdamW, state_bytes
from ..checks import check_choice, check_int, check_number
from ..data import DOMAINS, encode, encode_sample, load_snippets
from ..models import load_model
from ..rank import MATRIX_TYPES
from ..stats import binomial_se
from ..train import History, train
from .cache import cached_fit
from .runs import _scores

ALL_MATRICES = tuple(MATRIX_TYPES.values())  # Wq, Wk, Wv, Wo, FFN in, FFN out of every layer


@dataclass
class AdaLoRARun:
    """A trained AdaLoRA model, what was measured on it (the fields of ``runs.FineTune``), and its
    record: the kept rank of every layer at ``rank_steps``, the budget b(t) at every step and the
    mean orthogonality gap at ``orth_steps``. (Not built on runs.py, so that its cache key does
    not change when the LoRA runs' code does.)"""

    kind: str
    model: torch.nn.Module
    tokenizer: object
    history: History
    test_accuracy: float
    test_n: int
    trainable: int
    optimizer_state_bytes: int
    from_cache: bool
    config: dict
    test_correct: tuple  # per test row: was the prediction right (for minilora.stats.mcnemar)
    val_accuracy: float
    val_n: int
    layer_names: tuple = ()
    rank_steps: tuple = ()
    rank_history: tuple = ()  # per recorded step: kept rank of each of layer_names
    budget: tuple = ()  # b(t) for t = 1..steps
    orth_steps: tuple = ()
    orth_gap: tuple = ()  # mean over matrices of ‖PᵀP − I‖_F, ‖QQᵀ − I‖_F

    @property
    def test_se(self) -> float:
        """Binomial standard error of ``test_accuracy``."""
        return binomial_se(self.test_accuracy, self.test_n)

    @property
    def kept(self) -> dict[str, int]:
        """``{module name: kept rank}`` at the end of training."""
        return dict(zip(self.layer_names, self.rank_history[-1]))

    def kept_at(self, step: int) -> dict[str, int]:
        """The pattern recorded last at or before ``step``."""
        i = max([k for k, s in enumerate(self.rank_steps) if s <= step], default=0)
        return dict(zip(self.layer_names, self.rank_history[i]))


def adalora_fine_tune(
    targets=ALL_MATRICES,
    init_r=8,
    target_r=4,
    alpha=16.0,
    *,
    domain="movie",
    model_name=None,
    steps=100,
    lr=2e-3,
    batch_size=8,
    max_length=64,
    tinit=10,
    tfinal=30,
    delta_t=5,
    beta1=0.85,
    beta2=0.85,
    orth_weight=0.1,
    score="uncertainty",
    power=3,
    seed=0,
    test_n=None,
    val_n=300,
    record_every=5,
    device=None,
    use_cache=True,
    progress=None,
) -> AdaLoRARun:
    """Train AdaLoRA on ``domain`` (init rank ``init_r`` per matrix, pruned to ``target_r`` on
    average by the cubic schedule) and test it (AdaLoRA §3, Algorithm 1).

    ``orth_weight`` γ multiplies R(P, Q) in the loss (0: no penalty); ``score`` and ``power``
    are the allocator's (``"sensitivity"``/``"magnitude"`` ablations; 1 = a linear schedule).
    ``test_n``/``val_n``: sampled test/validation rows (None: all). The pattern is recorded
    every ``record_every`` steps and at every masking step's end.
    """
    check_choice(domain, "domain", DOMAINS)
    check_int(steps, "steps", 1)
    check_number(lr, "lr", 0.0, low_open=True)
    check_int(batch_size, "batch_size", 1)
    check_int(max_length, "max_length", 2, 512)
    check_int(seed, "seed", 0, 2**63 - 1)
    if test_n is not None:
        check_int(test_n, "test_n", 1)
    check_int(record_every, "record_every", 1)
    check_number(orth_weight, "orth_weight", 0.0)
    if val_n is not None:
        check_int(val_n, "val_n", 1)
    model, tokenizer = load_model(model_name, device=device, seed=seed)
    apply_adalora(model, targets, init_r=init_r, alpha=alpha, seed=seed)
    alloc = RankAllocator(
        model,
        target_r=target_r,
        tinit=tinit,
        tfinal=tfinal,
        total_step=steps,
        delta_t=delta_t,
        beta1=beta1,
        beta2=beta2,
        score=score,
        power=power,
    )
    names = tuple(svd_layers(model))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    train_data = encode(load_snippets(domain, "train"), tokenizer, max_length)
    test_data = encode_sample(domain, "test", tokenizer, test_n, max_length)
    val_data = encode_sample(domain, "val", tokenizer, val_n, max_length)
    config = dict(
        targets=list(targets) if not isinstance(targets, str) else targets,
        init_r=init_r,
        target_r=target_r,
        alpha=alpha,
        domain=domain,
        model=model_name,
        steps=steps,
        lr=lr,
        batch_size=batch_size,
        max_length=max_length,
        tinit=tinit,
        tfinal=tfinal,
        delta_t=delta_t,
        beta1=beta1,
        beta2=beta2,
        orth_weight=orth_weight,
        score=score,
        power=power,
        seed=seed,
        test_n=len(test_data),
        val_n=len(val_data),
        record_every=record_every,
        device=str(next(model.parameters()).device),
    )

    def fit():
        made, record = (
            [],
            {
                "rank_steps": [0],
                "rank_history": [[layer.r for layer in svd_layers(model).values()]],
                "budget": [],
                "orth_steps": [],
                "orth_gap": [],
            },
        )

        def adamw(params):
            made.append(AdamW(params, lr=lr, weight_decay=0.01))
            return made[0]

        def on_step(m, step):
            budget, _ = alloc.update_and_allocate(m, step)
            record["budget"].append(budget)
            if step % record_every == 0 or step == steps:
                record["rank_steps"].append(step)
                record["rank_history"].append(list(alloc.kept_ranks().values()))
                with torch.no_grad():
                    record["orth_steps"].append(step)
                    record["orth_gap"].append(orthogonal_regularization(m).item())

        extra = (lambda m: orth_weight * orthogonal_regularization(m)) if orth_weight > 0 else None
        hist = train(
            model,
            train_data,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            optimizer=adamw,
            extra_loss=extra,
            on_step=on_step,
            progress=progress,
        )
        return {
            "history": hist.to_dict(),
            "optimizer_state_bytes": state_bytes(made[0]),
            "pattern": alloc.rank_pattern,
            **record,
            **_scores(model, val_data, test_data),
        }

    meta, hit = cached_fit(f"adalora-{domain}-r{init_r}to{target_r}", config, model, fit, use_cache=use_cache)
    if hit:  # the cache holds the trained tensors; the kept set comes back from the record
        with torch.no_grad():
            for name, layer in svd_layers(model).items():
                layer.rank_mask.copy_(torch.tensor(meta["pattern"][f"{name}.lora_E"]))
    return AdaLoRARun(
        "adalora",
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
        layer_names=names,
        rank_steps=tuple(meta["rank_steps"]),
        rank_history=tuple(map(tuple, meta["rank_history"])),
        budget=tuple(meta["budget"]),
        orth_steps=tuple(meta["orth_steps"]),
        orth_gap=tuple(meta["orth_gap"]),
    )
