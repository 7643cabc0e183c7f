"""Intrinsic rank: is the update a fine-tune makes to a weight matrix low-rank? (LoRA §4, §7)

Read in this order:
  spectra.py  singular values of any matrix: effective/energy rank, best rank-r truncation and
              its error, subspace similarity (LoRA eq. 4), amplification factor (§7.3)
  delta.py    ΔW = W_ft − W0 of a real fine-tune, per encoder matrix, and a model whose ΔW are
              truncated to rank r (the direct test of the hypothesis)

The architecture of the whole library: docs/architecture.md.
"""

from .delta import (
    MATRIX_TYPES,
    decompose,
    encoder_matrices,
    matrix_label,
    tail,
    truncated_update,
    truncation_accuracy,
    weight_deltas,
)
from .spectra import (
    amplification_factor,
    as_matrix,
    as_spectrum,
    effective_rank,
    effective_rank_of_spectrum,
    energy_rank,
    energy_rank_of_spectrum,
    projection_norm,
    random_like,
    singular_vectors,
    spectrum,
    subspace_similarity,
    subspace_similarity_grid,
    truncate,
    truncation_error,
    truncation_error_curve,
    truncation_summary,
)

__all__ = [
    "MATRIX_TYPES", "amplification_factor", "as_matrix", "as_spectrum", "decompose", "effective_rank",
    "effective_rank_of_spectrum", "encoder_matrices", "energy_rank", "energy_rank_of_spectrum",
    "matrix_label", "projection_norm", "random_like", "singular_vectors", "spectrum", "subspace_similarity",
    "subspace_similarity_grid", "tail", "truncate", "truncated_update", "truncation_accuracy",
    "truncation_error", "truncation_error_curve", "truncation_summary", "weight_deltas",
]
