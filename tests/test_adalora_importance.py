"""minilora.adalora.importance: sensitivity, its smoothing, uncertainty and the triplet score."""

from __future__ import annotations

import torch

from minilora.adalora import ImportanceState, entry_score, triplet_scores, update_importance


def test_two_steps_follow_the_equations():
    w = torch.tensor([[1.0, -2.0]])
    g1, g2 = torch.tensor([[0.5, 0.5]]), torch.tensor([[-1.0, 0.0]])
    state = ImportanceState(w)
    update_importance(state, w, g1, 0.8, 0.5)
    update_importance(state, w, g2, 0.8, 0.5)
    i1, i2 = (w * g1).abs(), (w * g2).abs()
    ibar1 = 0.2 * i1
    ubar1 = 0.5 * (i1 - ibar1).abs()
    ibar2 = 0.8 * ibar1 + 0.2 * i2
    ubar2 = 0.5 * ubar1 + 0.5 * (i2 - ibar2).abs()
    torch.testing.assert_close(state.avg_sensitivity, ibar2)
    torch.testing.assert_close(entry_score(state), ibar2 * ubar2)
    torch.testing.assert_close(entry_score(state, "sensitivity"), ibar2)


def test_triplet_score_adds_the_value_and_the_mean_row_and_column_scores():
    s_a = torch.tensor([[1.0, 3.0], [0.0, 0.0]])  # rows of Q
    s_e = torch.tensor([[10.0], [20.0]])
    s_b = torch.tensor([[2.0, 4.0], [4.0, 0.0], [0.0, 2.0]])  # columns of P
    torch.testing.assert_close(triplet_scores(s_a, s_e, s_b), torch.tensor([10 + 2 + 2.0, 20 + 0 + 2.0]))
