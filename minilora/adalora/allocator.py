"""The rank allocator: score every triplet, keep the best ``budget(t)``, zero the λ of the rest
(AdaLoRA §3.2–3.3, Algorithm 1).

    alloc = RankAllocator(model, target_r=8, tinit=20, tfinal=20, total_step=200)
    for step in range(1, 201):
        loss.backward(); optimizer.step()
        budget, rank_pattern = alloc.update_and_allocate(model, step)   # before zero_grad()

Each call (1) updates Ī, Ū of every A, E, B entry from its gradient (``importance.py``) while
the budget is still moving, (2) asks the schedule (``schedule.py``) for the budget b(t) and
whether to mask, and (3) if so, zeroes λ_i of every triplet whose score S_i is ≤ the k-th
smallest over all layers, k = b_init − b(t). At t = T − t_final the final pattern is fixed
and the scores are dropped; after it, the fixed pattern is re-applied every step (the
optimizer would otherwise revive a pruned λ). This is what peft's
``AdaLoraModel.update_and_allocate`` does; the masks match peft's for the same gradients.
"""

from __future__ import annotations

import torch
from torch import nn

from ..checks import check_choice, check_int, check_number
from .importance import SCORES, ImportanceState, entry_score, triplet_scores, update_importance
from .layer import SVDLinear, svd_layers
from .schedule import budget_schedule, check_schedule


class RankAllocator:
    """Importance-scored pruning of the SVDLinear layers of ``model`` to ``target_r`` ranks per
    layer on average (AdaLoRA §3, Algorithm 1).

    b_init = Σ initial r; b_target = ``target_r`` × number of layers. ``score``:
    ``"uncertainty"`` (s = Ī·Ū, the paper), ``"sensitivity"`` (s = Ī), ``"magnitude"``
    (S_i = |λ_i|). ``power``: 3 = the paper's cubic schedule, 1 = linear. Bad values raise
    ValueError naming the parameter (``total_step`` missing, ``tinit ≥ total_step − tfinal``,
    ``target_r > init_r``, β outside (0, 1)).
    """

    def __init__(
        self,
        model: nn.Module,
        target_r: int,
        tinit: int = 0,
        tfinal: int = 0,
        total_step: int | None = None,
        delta_t: int = 1,
        beta1: float = 0.85,
        beta2: float = 0.85,
        score: str = "uncertainty",
        power: float = 3,
    ):
        self.tinit, self.tfinal, self.total_step, self.delta_t = check_schedule(
            tinit, tfinal, total_step, delta_t
        )
        self.beta1 = check_number(beta1, "beta1", 0.0, 1.0, low_open=True, high_open=True)
        self.beta2 = check_number(beta2, "beta2", 0.0, 1.0, low_open=True, high_open=True)
        self.score = check_choice(score, "score", SCORES)
        self.power = check_number(power, "power", 0.0, low_open=True)
        layers = svd_layers(model)
        if not layers:
            raise ValueError("model has no SVDLinear layer: call apply_adalora(model, ...) first")
        init_r = min(layer.r for layer in layers.values())
        self.target_r = check_int(
            target_r, "target_r", 0, init_r, " (at most init_r, the rank every layer starts with)"
        )
        self.names = list(layers)
        self.init_budget = sum(layer.r for layer in layers.values())
        self.target_budget = self.target_r * len(layers)
        self.rank_pattern = {f"{n}.lora_E": [True] * layer.r for n, layer in layers.items()}
        self.reset_importance()

    def reset_importance(self) -> None:
        """Forget Ī and Ū (done once the final pattern is fixed)."""
        self.state: dict[str, ImportanceState] = {}

    def budget_schedule(self, step: int) -> tuple[int, bool]:
        """``(budget, mask_now)`` at ``step`` (``schedule.budget_schedule`` with this run's numbers)."""
        return budget_schedule(
            step,
            self.init_budget,
            self.target_budget,
            self.tinit,
            self.tfinal,
            self.total_step,
            self.delta_t,
            self.power,
        )

    def _layers(self, model) -> dict[str, SVDLinear]:
        layers = svd_layers(model)
        if list(layers) != self.names:
            raise ValueError("model's SVDLinear layers are not the ones this RankAllocator was made for")
        return layers

    @torch.no_grad()
    def update_importance(self, model: nn.Module) -> None:
        """Eqs. 6–8 for every A, E, B entry; a parameter whose ``.grad`` is None is skipped."""
        for name, layer in self._layers(model).items():
            for kind in ("lora_A", "lora_E", "lora_B"):
                p = getattr(layer, kind)
                if p.grad is None:
                    continue
                key = f"{name}.{kind}"
                if key not in self.state:
                    self.state[key] = ImportanceState(p)
                update_importance(self.state[key], p, p.grad, self.beta1, self.beta2)

    def triplet_scores(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """``{"<module>.lora_E": S}`` with S_i of eq. 10 per triplet (zeros where no score yet)."""
        scores = {}
        for name, layer in self._layers(model).items():
            if self.score == "magnitude":
                scores[f"{name}.lora_E"] = layer.lora_E.detach().abs().view(-1)
                continue
            parts = []
            for kind in ("lora_A", "lora_E", "lora_B"):
                state = self.state.get(f"{name}.{kind}")
                p = getattr(layer, kind)
                parts.append(torch.zeros_like(p) if state is None else entry_score(state, self.score))
            scores[f"{name}.lora_E"] = triplet_scores(*parts)
        return scores

    @torch.no_grad()
    def mask_to_budget(self, model: nn.Module, budget: int) -> dict[str, list[bool]]:
        """Zero λ_i wherever S_i ≤ the k-th smallest score over all layers, k = b_init − budget
        (ties are all masked, as in peft); returns and stores the rank pattern."""
        layers = self._layers(model)
        scores = self.triplet_scores(model)
        k = self.init_budget - budget
        if k <= 0:
            threshold = -float("inf")
        else:
            # the k-th smallest S over every triplet of every layer
            threshold = torch.kthvalue(torch.cat([s.view(-1) for s in scores.values()]).float().cpu(), k)[
                0
            ].item()
        for name, layer in layers.items():
            keep = scores[f"{name}.lora_E"] > threshold
            layer.lora_E.masked_fill_(~keep.view(-1, 1), 0.0)
            layer.rank_mask.copy_(keep)
        self.rank_pattern = {f"{n}.lora_E": layer.rank_mask.tolist() for n, layer in layers.items()}
        return self.rank_pattern

    @torch.no_grad()
    def apply_pattern(self, model: nn.Module) -> None:
        """Re-zero the λ of the pruned triplets (the final phase, pattern fixed)."""
        for layer in self._layers(model).values():
            if not bool(layer.rank_mask.all()):
                layer.lora_E.masked_fill_(~layer.rank_mask.view(-1, 1), 0.0)

    def update_and_allocate(self, model: nn.Module, step: int) -> tuple[int, dict[str, list[bool]]]:
        """One allocator step, after ``optimizer.step()`` and before ``zero_grad()`` (Algorithm 1).

        Returns ``(budget, rank_pattern)``: the budget b(step) and the pattern in force
        (``{"<module>.lora_E": [kept?] * r}``, peft's format). A step that does not mask only
        updates Ī, Ū (and nothing at all in the final phase but re-zeroing pruned λ).
        """
        step = check_int(step, "step", 0)
        end = self.total_step - self.tfinal
        budget, mask_now = self.budget_schedule(step)
        if step < end:
            self.update_importance(model)
            if mask_now:
                self.mask_to_budget(model, budget)
        elif step == end:  # fix the final pattern, drop the scores
            self.mask_to_budget(model, budget)
            self.reset_importance()
        else:
            self.apply_pattern(model)
        return budget, self.rank_pattern

    def kept_ranks(self) -> dict[str, int]:
        """``{module name: number of kept triplets}`` of the current pattern."""
        return {k.removesuffix(".lora_E"): sum(v) for k, v in self.rank_pattern.items()}
