"""minilora.delta on a tiny BERT: ΔW extraction, truncated updates written and restored exactly."""

import copy

import pytest
import torch

from minilora.data import Encoded
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
from minilora.rank import truncate
from minilora.train import evaluate


def tiny_bert(seed=0, layers=2):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=40, max_position_embeddings=32, num_labels=2)
    return BertForSequenceClassification(config).eval()


def tiny_data(n=48, length=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 60, (n, length), generator=g)
    return Encoded(ids, torch.ones(n, length, dtype=torch.long), torch.randint(0, 2, (n,), generator=g))


def perturbed(base, scale=0.5, seed=1):
    """A copy of ``base`` with a random full-rank change to every encoder matrix and the head's bias."""
    tuned = copy.deepcopy(base)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lin in encoder_matrices(tuned).values():
            lin.weight.add_(scale * torch.randn(lin.weight.shape, generator=g))
        tuned.classifier.bias.add_(0.3)
    return tuned


@pytest.fixture
def pair():
    """(base, tuned) tiny BERTs differing in every encoder matrix."""
    base = tiny_bert()
    return base, perturbed(base)


def test_matrix_label_and_encoder_matrices(pair):
    base, _ = pair
    found = encoder_matrices(base)
    assert len(found) == 2 * len(MATRIX_TYPES) == 12
    assert matrix_label("bert.encoder.layer.1.attention.self.query") == (1, "query")
    assert matrix_label("bert.encoder.layer.0.attention.output.dense") == (0, "attn_out")
    assert matrix_label("bert.encoder.layer.0.output.dense") == (0, "ffn_out")
    assert matrix_label("bert.encoder.layer.3.intermediate.dense") == (3, "ffn_in")
    kinds = [matrix_label(n)[1] for n in encoder_matrices(base, ("value", "ffn_in"))]
    assert kinds == ["value", "ffn_in"] * 2
    with pytest.raises(ValueError, match="name must be an encoder matrix"):
        matrix_label("bert.pooler.dense")
    with pytest.raises(ValueError, match="types must be"):
        encoder_matrices(base, ("query", "gate"))
    with pytest.raises(ValueError, match="types must be"):
        encoder_matrices(base, "query")
    with pytest.raises(ValueError, match="no encoder"):
        encoder_matrices(torch.nn.Sequential(torch.nn.Linear(2, 2)))


def test_weight_deltas_are_the_difference(pair):
    base, tuned = pair
    deltas = weight_deltas(tuned, base)
    for name, d in deltas.items():
        lin_t, lin_b = encoder_matrices(tuned)[name], encoder_matrices(base)[name]
        assert torch.equal(d, lin_t.weight - lin_b.weight)
    with pytest.raises(ValueError, match="same architecture"):
        weight_deltas(tuned, tiny_bert(layers=3))


def test_truncated_update_is_w0_plus_truncated_delta_and_restores(pair):
    base, tuned = pair
    deltas = weight_deltas(tuned, base)
    factors = decompose(deltas)
    before = {n: p.detach().clone() for n, p in tuned.named_parameters()}
    with truncated_update(tuned, factors, 2) as m:
        assert m is tuned
        for name, lin in encoder_matrices(tuned).items():
            expected = encoder_matrices(base)[name].weight + truncate(deltas[name], 2)
            torch.testing.assert_close(lin.weight, expected, atol=1e-5, rtol=0)
        assert torch.equal(tuned.classifier.bias, before["classifier.bias"])  # the rest stays fine-tuned
    assert all(torch.equal(p, before[n]) for n, p in tuned.named_parameters())
    with truncated_update(tuned, factors, 0):  # r = 0: the pretrained matrices
        for name, lin in encoder_matrices(tuned).items():
            torch.testing.assert_close(lin.weight, encoder_matrices(base)[name].weight, atol=1e-5, rtol=0)
    for r in (None, "full", 16, 1000):  # nothing to cut
        with truncated_update(tuned, factors, r):
            assert all(torch.equal(p, before[n]) for n, p in tuned.named_parameters())


def test_truncated_update_restores_after_an_exception(pair):
    base, tuned = pair
    factors = decompose(weight_deltas(tuned, base))
    before = {n: p.detach().clone() for n, p in tuned.named_parameters()}
    with pytest.raises(RuntimeError, match="boom"):
        with truncated_update(tuned, factors, 1):
            raise RuntimeError("boom")
    assert all(torch.equal(p, before[n]) for n, p in tuned.named_parameters())


def test_truncated_update_only_named_matrices(pair):
    base, tuned = pair
    factors = decompose(weight_deltas(tuned, base))
    name = next(iter(factors))
    before = {n: lin.weight.detach().clone() for n, lin in encoder_matrices(tuned).items()}
    with truncated_update(tuned, factors, 1, names=[name]):
        changed = [n for n, lin in encoder_matrices(tuned).items() if not torch.equal(lin.weight, before[n])]
    assert changed == [name]


def test_truncation_accuracy_matches_evaluate(pair):
    base, tuned = pair
    factors = decompose(weight_deltas(tuned, base))
    data = tiny_data()
    assert truncation_accuracy(tuned, factors, data, "full") == evaluate(tuned, data)
    with truncated_update(tuned, factors, 0):
        expected = evaluate(tuned, data)
    assert truncation_accuracy(tuned, factors, data, 0) == expected


def test_bad_arguments(pair):
    base, tuned = pair
    factors = decompose(weight_deltas(tuned, base))
    for r in (-1, 1.5, True, "half"):
        with pytest.raises(ValueError, match="r must be"):
            with truncated_update(tuned, factors, r):
                pass
    with pytest.raises(ValueError, match="names not in factors"):
        with truncated_update(tuned, factors, 1, names=["bert.pooler.dense"]):
            pass
    with pytest.raises(ValueError, match="model has no module"):
        with truncated_update(torch.nn.Linear(2, 2), factors, 1):
            pass
    with pytest.raises(ValueError, match="r must be"):
        tail(next(iter(factors.values())), 17)
    with pytest.raises(ValueError, match="finite"):
        decompose({"x": torch.tensor([[float("nan")]])})
