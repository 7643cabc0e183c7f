"""Matplotlib figures: pure functions that take measured numbers and return a Figure.

One submodule per topic (tour, rank, lora, quant, memory); the figures are re-exported here.
"""

from .adalora import orthogonality_figure, rank_budget_figure, rank_share_figure
from .lora import (
    budget_figure,
    cross_domain_figure,
    learning_curve_figure,
    lora_bypass_figure,
    rank_sweep_figure,
    subspace_similarity_figure,
)
from .memory import calculator_figure, memory_stack_figure, paging_diagram, timeline_figure
from .quant import (
    bits_error_figure,
    blockwise_layout_diagram,
    construction_figure,
    error_bars_figure,
    levels_figure,
    normality_figure,
    quant_histogram_figure,
)
from .rank import accuracy_vs_rank_figure, rank_heatmaps_figure, spectra_figure, truncation_figure
from .tour import (
    accuracy_bars_figure,
    dataset_figure,
    parameter_budget_figure,
    probe_figure,
    training_curves_figure,
)

__all__ = [
    "orthogonality_figure", "rank_budget_figure", "rank_share_figure",
    "accuracy_bars_figure", "accuracy_vs_rank_figure", "bits_error_figure", "blockwise_layout_diagram",
    "budget_figure", "calculator_figure",
    "construction_figure", "cross_domain_figure", "dataset_figure", "error_bars_figure",
    "learning_curve_figure", "levels_figure", "lora_bypass_figure", "memory_stack_figure", "normality_figure",
    "paging_diagram",
    "parameter_budget_figure", "probe_figure", "quant_histogram_figure", "rank_heatmaps_figure",
    "rank_sweep_figure", "spectra_figure", "subspace_similarity_figure", "timeline_figure",
    "training_curves_figure", "truncation_figure",
]
