"""minilora.rank.delta on a tiny BERT: ΔW extraction, truncated updates written and restored exactly."""

import pytest
import torch

from minilora.rank import truncate
from minilora.rank.delta import (
    MATRIX_TYPES,
    decompose,
    encoder_matrices,
    matrix_label,
    tail,
    truncated_update,
    truncation_accuracy,
    weight_deltas,
)
from minilora.train import evaluate


@pytest.fixture
def pair(tiny_bert, perturbed):
    """(base, tuned) tiny BERTs differing in every encoder matrix."""
    base = tiny_bert()
    return base, perturbed(base)


@pytest.fixture
def factors(pair):
    base, tuned = pair
    return decompose(weight_deltas(tuned, base))


# --- naming the encoder matrices -----------------------------------------------------------------

def test_encoder_matrices_finds_six_types_per_layer(pair):
    base, _ = pair
    found = encoder_matrices(base)
    assert len(found) == 2 * len(MATRIX_TYPES) == 12


@pytest.mark.parametrize("name, label", [
    ("bert.encoder.layer.1.attention.self.query", (1, "query")),
    ("bert.encoder.layer.0.attention.output.dense", (0, "attn_out")),
    ("bert.encoder.layer.0.output.dense", (0, "ffn_out")),
    ("bert.encoder.layer.3.intermediate.dense", (3, "ffn_in")),
])
def test_matrix_label_gives_layer_and_type(name, label):
    assert matrix_label(name) == label


def test_encoder_matrices_keeps_only_the_types_asked_for(pair):
    base, _ = pair
    kinds = [matrix_label(n)[1] for n in encoder_matrices(base, ("value", "ffn_in"))]
    assert kinds == ["value", "ffn_in"] * 2


def test_matrix_label_rejects_a_name_outside_the_encoder():
    with pytest.raises(ValueError, match="name must be an encoder matrix"):
        matrix_label("bert.pooler.dense")


@pytest.mark.parametrize("types", [("query", "gate"), "query"])
def test_encoder_matrices_rejects_unknown_or_unlisted_types(pair, types):
    base, _ = pair
    with pytest.raises(ValueError, match="types must be"):
        encoder_matrices(base, types)


def test_encoder_matrices_rejects_a_model_without_an_encoder():
    with pytest.raises(ValueError, match="no encoder"):
        encoder_matrices(torch.nn.Sequential(torch.nn.Linear(2, 2)))


# --- ΔW ---------------------------------------------------------------------------------------------

def test_weight_deltas_are_the_difference(pair):
    base, tuned = pair
    deltas = weight_deltas(tuned, base)
    for name, d in deltas.items():
        lin_t, lin_b = encoder_matrices(tuned)[name], encoder_matrices(base)[name]
        assert torch.equal(d, lin_t.weight - lin_b.weight)


def test_weight_deltas_rejects_models_of_different_architectures(pair, tiny_bert):
    _, tuned = pair
    with pytest.raises(ValueError, match="same architecture"):
        weight_deltas(tuned, tiny_bert(layers=3))


def test_decompose_rejects_non_finite_deltas():
    with pytest.raises(ValueError, match="finite"):
        decompose({"x": torch.tensor([[float("nan")]])})


def test_tail_rejects_a_rank_above_the_matrix(factors):
    with pytest.raises(ValueError, match="r must be"):
        tail(next(iter(factors.values())), 17)


# --- truncated_update ---------------------------------------------------------------------------

def test_truncated_update_is_w0_plus_truncated_delta(pair, factors):
    base, tuned = pair
    deltas = weight_deltas(tuned, base)
    with truncated_update(tuned, factors, 2) as m:
        assert m is tuned
        for name, lin in encoder_matrices(tuned).items():
            expected = encoder_matrices(base)[name].weight + truncate(deltas[name], 2)
            torch.testing.assert_close(lin.weight, expected, atol=1e-5, rtol=0)


def test_truncated_update_keeps_the_rest_fine_tuned(pair, factors):
    _, tuned = pair
    bias = tuned.classifier.bias.detach().clone()
    with truncated_update(tuned, factors, 2):
        assert torch.equal(tuned.classifier.bias, bias)  # the rest stays fine-tuned


def test_truncated_update_restores_the_weights_on_exit(pair, factors):
    _, tuned = pair
    before = {n: p.detach().clone() for n, p in tuned.named_parameters()}
    with truncated_update(tuned, factors, 2):
        pass
    assert all(torch.equal(p, before[n]) for n, p in tuned.named_parameters())


def test_truncated_update_at_rank_zero_is_the_pretrained_model(pair, factors):
    base, tuned = pair
    with truncated_update(tuned, factors, 0):  # r = 0: the pretrained matrices
        for name, lin in encoder_matrices(tuned).items():
            torch.testing.assert_close(lin.weight, encoder_matrices(base)[name].weight, atol=1e-5, rtol=0)


@pytest.mark.parametrize("r", [None, "full", 16, 1000])
def test_truncated_update_at_full_rank_changes_nothing(pair, factors, r):
    _, tuned = pair
    before = {n: p.detach().clone() for n, p in tuned.named_parameters()}
    with truncated_update(tuned, factors, r):  # nothing to cut
        assert all(torch.equal(p, before[n]) for n, p in tuned.named_parameters())


def test_truncated_update_restores_after_an_exception(pair, factors):
    _, tuned = pair
    before = {n: p.detach().clone() for n, p in tuned.named_parameters()}
    with pytest.raises(RuntimeError, match="boom"):
        with truncated_update(tuned, factors, 1):
            raise RuntimeError("boom")
    assert all(torch.equal(p, before[n]) for n, p in tuned.named_parameters())


def test_truncated_update_only_named_matrices(pair, factors):
    _, tuned = pair
    name = next(iter(factors))
    before = {n: lin.weight.detach().clone() for n, lin in encoder_matrices(tuned).items()}
    with truncated_update(tuned, factors, 1, names=[name]):
        changed = [n for n, lin in encoder_matrices(tuned).items() if not torch.equal(lin.weight, before[n])]
    assert changed == [name]


@pytest.mark.parametrize("r", [-1, 1.5, True, "half"])
def test_truncated_update_rejects_a_bad_rank(pair, factors, r):
    _, tuned = pair
    with pytest.raises(ValueError, match="r must be"):
        with truncated_update(tuned, factors, r):
            pass


def test_truncated_update_rejects_names_not_in_factors(pair, factors):
    _, tuned = pair
    with pytest.raises(ValueError, match="names not in factors"):
        with truncated_update(tuned, factors, 1, names=["bert.pooler.dense"]):
            pass


def test_truncated_update_rejects_a_model_without_the_matrices(factors):
    with pytest.raises(ValueError, match="model has no module"):
        with truncated_update(torch.nn.Linear(2, 2), factors, 1):
            pass


# --- truncation_accuracy ------------------------------------------------------------------------

def test_truncation_accuracy_at_full_rank_is_the_fine_tuned_accuracy(pair, factors, tiny_data):
    _, tuned = pair
    data = tiny_data()
    assert truncation_accuracy(tuned, factors, data, "full") == evaluate(tuned, data)


def test_truncation_accuracy_matches_evaluate_inside_truncated_update(pair, factors, tiny_data):
    _, tuned = pair
    data = tiny_data()
    with truncated_update(tuned, factors, 0):
        expected = evaluate(tuned, data)
    assert truncation_accuracy(tuned, factors, data, 0) == expected
