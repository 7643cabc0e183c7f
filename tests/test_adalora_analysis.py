"""minilora.adalora.analysis: kept ranks arranged by layer × matrix type and their contrasts."""

from __future__ import annotations

import math

import pytest

from minilora.adalora import rank_grid, share_difference

PREFIX = "bert.encoder.layer"
PATHS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "ffn_in": "intermediate.dense",
    "ffn_out": "output.dense",
}


def kept(rank_of):
    return {
        f"{PREFIX}.{layer}.{path}": rank_of(layer, kind) for layer in range(4) for kind, path in PATHS.items()
    }


def test_grid_puts_each_matrix_in_its_layer_and_type_cell():
    grid = rank_grid(kept(lambda layer, kind: 10 * layer + list(PATHS).index(kind)))
    assert grid.layers == (0, 1, 2, 3) and grid.types == tuple(PATHS)
    assert grid.ranks[2, 4] == 24


def test_contrasts_measure_ffn_and_top_layers():
    grid = rank_grid(kept(lambda layer, kind: (6 if kind.startswith("ffn") else 2) + layer))
    diff = share_difference(grid)
    assert diff["ffn_minus_attention"] == pytest.approx(4.0) and diff["top_minus_bottom"] == pytest.approx(
        2.0
    )


def test_a_type_not_adapted_is_left_out():
    grid = rank_grid({f"{PREFIX}.0.attention.self.query": 3, f"{PREFIX}.1.attention.self.query": 1})
    assert grid.types == ("query",) and grid.mean_by_layer() == {0: 3.0, 1: 1.0}


def test_contrasts_need_both_groups():
    grid = rank_grid({f"{PREFIX}.0.attention.self.query": 3, f"{PREFIX}.1.attention.self.query": 1})
    with pytest.raises(ValueError, match="FFN"):
        share_difference(grid)


def test_names_outside_the_encoder_are_refused():
    with pytest.raises(ValueError, match="encoder"):
        rank_grid({"classifier": 2})
    assert math.isnan(
        rank_grid({f"{PREFIX}.0.attention.self.query": 3, f"{PREFIX}.1.intermediate.dense": 1}).ranks[0, 1]
    )
