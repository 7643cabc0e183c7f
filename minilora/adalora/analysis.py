"""Where did the rank go?  Kept ranks arranged by layer × matrix type, and summaries of them.

    grid = rank_grid(alloc.kept_ranks())        # layers × (query, key, value, attn_out, ffn_in, ffn_out)
    rank_by(grid)                               # mean kept rank per matrix type and per layer

AdaLoRA §4 (Fig. 1, Fig. 4) reports that the budget goes preferentially to the FFN matrices
and to the top layers; ``share_difference`` measures that on a run's final pattern.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..rank import MATRIX_TYPES, matrix_label

FFN_TYPES = ("ffn_in", "ffn_out")
ATTENTION_TYPES = ("query", "key", "value", "attn_out")


@dataclass(frozen=True)
class RankGrid:
    """``ranks[i, j]``: triplets kept in layer ``layers[i]``, matrix ``types[j]`` (NaN: not adapted)."""

    layers: tuple
    types: tuple
    ranks: np.ndarray

    def mean_by_type(self) -> dict[str, float]:
        """Mean kept rank of each matrix type over the layers."""
        return {t: float(np.nanmean(self.ranks[:, j])) for j, t in enumerate(self.types)}

    def mean_by_layer(self) -> dict[int, float]:
        """Mean kept rank of each layer over the matrix types."""
        return {layer: float(np.nanmean(self.ranks[i])) for i, layer in enumerate(self.layers)}


def rank_grid(kept: dict) -> RankGrid:
    """``{module name: kept rank}`` (``RankAllocator.kept_ranks()``) as a layer × type grid.

    Names must be encoder matrices (``…encoder.layer.N.<type path>``, ``minilora.rank.matrix_label``).
    """
    if not isinstance(kept, dict) or not kept:
        raise ValueError("kept must be a non-empty dict {module name: kept rank}")
    labels = {matrix_label(n): r for n, r in kept.items()}
    layers = tuple(sorted({layer for layer, _ in labels}))
    types = tuple(t for t in MATRIX_TYPES if any(t == k for _, k in labels))
    ranks = np.full((len(layers), len(types)), np.nan)
    for (layer, kind), r in labels.items():
        ranks[layers.index(layer), types.index(kind)] = r
    return RankGrid(layers, types, ranks)


def share_difference(grid: RankGrid) -> dict[str, float]:
    """The two contrasts of AdaLoRA's Fig. 1 on one final pattern, in mean kept rank per matrix:
    ``ffn_minus_attention`` (FFN in/out against Wq, Wk, Wv, Wo) and ``top_minus_bottom``
    (the upper half of the layers against the lower half)."""
    by_type = grid.mean_by_type()
    ffn = [by_type[t] for t in FFN_TYPES if t in by_type]
    att = [by_type[t] for t in ATTENTION_TYPES if t in by_type]
    if not ffn or not att:
        raise ValueError("the grid needs FFN and attention matrices to compare them")
    by_layer = grid.mean_by_layer()
    half = len(grid.layers) // 2
    if half == 0:
        raise ValueError("the grid needs at least two layers to compare top and bottom")
    bottom = [by_layer[layer] for layer in grid.layers[:half]]
    top = [by_layer[layer] for layer in grid.layers[-half:]]
    return {
        "ffn_minus_attention": float(np.mean(ffn) - np.mean(att)),
        "top_minus_bottom": float(np.mean(top) - np.mean(bottom)),
    }
