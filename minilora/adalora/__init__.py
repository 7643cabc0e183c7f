"""AdaLoRA (Zhang et al. 2023): an SVD-form update whose rank budget moves to where it matters.

    h = W0 x + (α / r_init) · P Λ Q x,   Λ = diag(λ): the singular values the allocator prunes

Read in this order:
  layer.py       SVDLinear (P = lora_B, Λ = lora_E, Q = lora_A), apply_adalora      (AdaLoRA §3.1)
  regularize.py  the orthogonality penalty ‖PᵀP − I‖_F + ‖QQᵀ − I‖_F                 (§3.1, eq. 4)
  importance.py  sensitivity |w·∂L/∂w|, its EMA Ī, uncertainty Ū, triplet scores   (§3.2, eqs. 6–10)
  schedule.py    the cubic budget b(t)                                             (§3.3, eq. 12)
  allocator.py   RankAllocator: score, keep the best b(t) triplets, zero the rest   (Algorithm 1)
  analysis.py    where the rank went: kept ranks as a layer × matrix grid, FFN/top-layer contrasts
  persist.py     save/load in peft's ADALORA folder format (through minilora.save_adapter/load_adapter)

peft's AdaLoRA (peft.tuners.adalora) is the reference the tests compare against.
"""

from .allocator import RankAllocator
from .analysis import ATTENTION_TYPES, FFN_TYPES, RankGrid, rank_grid, share_difference
from .importance import SCORES, ImportanceState, entry_score, triplet_scores, update_importance
from .layer import SVDLinear, apply_adalora, mark_only_adalora_trainable, svd_layers
from .persist import load_adalora, save_adalora
from .regularize import orthogonal_regularization, orthogonality_gap
from .schedule import budget_schedule, check_schedule

__all__ = [
    "ATTENTION_TYPES",
    "FFN_TYPES",
    "RankGrid",
    "SCORES",
    "ImportanceState",
    "RankAllocator",
    "SVDLinear",
    "apply_adalora",
    "budget_schedule",
    "check_schedule",
    "entry_score",
    "load_adalora",
    "mark_only_adalora_trainable",
    "orthogonal_regularization",
    "orthogonality_gap",
    "rank_grid",
    "save_adalora",
    "share_difference",
    "svd_layers",
    "triplet_scores",
    "update_importance",
]
