"""How important is each singular triplet?  (AdaLoRA §3.2, eqs. 6–11)

For every entry w of Q (``lora_A``), Λ (``lora_E``) and P (``lora_B``), after each backward:

    I  = |w · ∂L/∂w|                          sensitivity (eq. 6): the loss change if w were 0
    Ī ← β1 Ī + (1 − β1) I                      smoothed sensitivity (eq. 7)
    Ū ← β2 Ū + (1 − β2) |I − Ī|                uncertainty, with the updated Ī (eq. 8)
    s  = Ī · Ū                                  the entry's score (eq. 9)

and a triplet (λ_i, the i-th row of Q, the i-th column of P) scores

    S_i = s(λ_i) + mean_j s(Q_ij) + mean_k s(P_ki)        (eq. 10)

The ablations in notebook 03 swap the entry score: ``"sensitivity"`` uses s = Ī alone (no
uncertainty term); ``"magnitude"`` ranks triplets by |λ_i| alone (no gradients).
"""

from __future__ import annotations

import torch

SCORES = ("uncertainty", "sensitivity", "magnitude")


class ImportanceState:
    """The smoothed sensitivity Ī and uncertainty Ū of one parameter tensor (zeros at first)."""

    __slots__ = ("avg_sensitivity", "avg_uncertainty")

    def __init__(self, like: torch.Tensor):
        self.avg_sensitivity = torch.zeros_like(like, memory_format=torch.contiguous_format)
        self.avg_uncertainty = torch.zeros_like(like, memory_format=torch.contiguous_format)


@torch.no_grad()
def update_importance(
    state: ImportanceState, weight: torch.Tensor, grad: torch.Tensor, beta1: float, beta2: float
) -> None:
    """One step of eqs. 6–8 for one tensor, in place on ``state``."""
    # I = |w · ∂L/∂w|
    sensitivity = (weight * grad).abs_()
    # Ī ← β1 Ī + (1 − β1) I
    state.avg_sensitivity.mul_(beta1).add_(sensitivity, alpha=1 - beta1)
    # Ū ← β2 Ū + (1 − β2) |I − Ī|   (Ī already updated, as in the AdaLoRA code and peft)
    state.avg_uncertainty.mul_(beta2).add_(sensitivity.sub_(state.avg_sensitivity).abs_(), alpha=1 - beta2)


def entry_score(state: ImportanceState, score: str = "uncertainty") -> torch.Tensor:
    """s = Ī · Ū (eq. 9), or Ī alone for ``score="sensitivity"``."""
    if score == "sensitivity":
        return state.avg_sensitivity
    return state.avg_sensitivity * state.avg_uncertainty


def triplet_scores(score_A: torch.Tensor, score_E: torch.Tensor, score_B: torch.Tensor) -> torch.Tensor:
    """S_i = s(λ_i) + mean_j s(Q_ij) + mean_k s(P_ki) (eq. 10): one score per triplet, shape (r,).

    ``score_A`` is r × d_in (rows of Q), ``score_E`` r × 1, ``score_B`` d_out × r (columns of P).
    """
    return score_E.view(-1) + (score_A.mean(dim=1) + score_B.mean(dim=0))
