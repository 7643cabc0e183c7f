import math

import pytest
import torch

from minilora.data import encode, load_snippets
from minilora.stats import binomial_se, compare
from minilora.train import History, evaluate, predict, quiet, train


@pytest.fixture
def tiny(minilm):
    model, tok = minilm
    rows = load_snippets("tweets", "train")
    balanced = [s for s in rows if s.label == 1][:8] + [s for s in rows if s.label == 0][:8]
    return model, encode(balanced, tok, max_length=24)


def test_loss_decreases_on_a_small_batch(tiny):
    model, data = tiny
    hist = train(model, data, steps=15, batch_size=16, lr=2e-4, warmup=0.0, progress=False)
    assert len(hist.loss) == 15
    assert sum(hist.loss[-3:]) / 3 < 0.5 * sum(hist.loss[:3]) / 3
    assert evaluate(model, data) == 1.0
    assert hist.wall_time > 0 and hist.seconds_per_step > 0
    assert hist.peak_memory_bytes is None or hist.peak_memory_bytes > 0


def test_same_seed_same_trajectory(minilm):
    import copy

    model, tok = minilm
    data = encode(load_snippets("tweets", "train")[:32], tok, max_length=24)
    twin = copy.deepcopy(model)
    a = train(model, data, steps=3, batch_size=8, lr=1e-4, progress=False).loss
    b = train(twin, data, steps=3, batch_size=8, lr=1e-4, progress=False).loss
    assert a == b


def test_periodic_eval_and_hooks(tiny):
    model, data = tiny
    calls = []
    hist = train(model, data, steps=4, batch_size=8, lr=1e-5, eval_data=data, eval_every=2,
                 extra_loss=lambda m: torch.zeros(()), on_step=lambda m, s: calls.append(s), progress=False)
    assert hist.eval_steps == [2, 4] and len(hist.eval_accuracy) == 2
    assert calls == [1, 2, 3, 4]
    assert set(History(**hist.to_dict()).to_dict()) == set(hist.to_dict())


def test_optimizer_is_injectable(tiny):
    model, data = tiny
    head = list(model.classifier.parameters())
    for p in model.parameters():
        p.requires_grad = False
    for p in head:
        p.requires_grad = True
    before = model.bert.pooler.dense.weight.clone()
    sgd = torch.optim.SGD(head, lr=0.1)
    train(model, data, steps=2, batch_size=8, optimizer=sgd, progress=False)
    made = []
    train(model, data, steps=2, batch_size=8, progress=False,
          optimizer=lambda ps: made.append(len(list(ps))) or torch.optim.SGD(head, lr=0.1))
    assert made == [2]
    assert torch.equal(before, model.bert.pooler.dense.weight)  # frozen stays frozen


def test_predict_shapes_and_mode(tiny):
    model, data = tiny
    model.train()
    logits = predict(model, data)
    assert logits.shape == (16, 2) and logits.dtype == torch.float32
    assert model.training  # restored


@pytest.mark.parametrize("kw,match", [
    (dict(steps=0), "steps"), (dict(lr=-1.0), "lr"), (dict(lr=float("nan")), "lr"),
    (dict(clip=0), "clip"), (dict(warmup=1.0), "warmup"), (dict(eval_every=5), "eval_data"),
    (dict(optimizer="adam"), "optimizer"),
])
def test_bad_arguments(tiny, kw, match):
    model, data = tiny
    with pytest.raises((ValueError, TypeError), match=match):
        train(model, data, progress=False, **kw)


def test_nothing_trainable_is_an_error(tiny):
    model, data = tiny
    for p in model.parameters():
        p.requires_grad = False
    with pytest.raises(ValueError, match="requires_grad"):
        train(model, data, steps=1, progress=False)


def test_binomial_se_and_compare():
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    assert binomial_se(1.0, 10) == 0.0
    with pytest.raises(ValueError):
        binomial_se(0.5, 0)
    n = 1000
    se = math.hypot(binomial_se(0.80, n), binomial_se(0.78, n))
    assert 0.02 < 2 * se
    assert compare(0.80, 0.78, n) == "no difference"
    assert compare(0.85, 0.75, n) == "higher"
    assert compare(0.75, 0.85, n) == "lower"


def test_quiet_follows_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert quiet()
    monkeypatch.setenv("CI", "false")
    assert not quiet()
    monkeypatch.delenv("CI")
    assert not quiet()


def test_predict_keeps_row_order(minilm):
    from minilora.data import Encoded

    model, tok = minilm
    data = encode(load_snippets("amazon", "val")[:40], tok)
    whole = predict(model, data, batch_size=7)  # scored in length order, returned in row order
    for i in range(0, 40, 9):
        row = Encoded(data.input_ids[i:i + 1], data.attention_mask[i:i + 1], data.labels[i:i + 1])
        assert torch.allclose(whole[i], predict(model, row)[0], atol=1e-5)


def test_default_optimizer_is_minilora_adamw_equal_to_torch(minilm):
    import copy

    model, tok = minilm
    data = encode(load_snippets("tweets", "train")[:16], tok, max_length=24)
    twin = copy.deepcopy(model)
    train(model, data, steps=3, batch_size=8, lr=1e-4, progress=False)  # default: minilora AdamW
    train(twin, data, steps=3, batch_size=8, lr=1e-4, progress=False,
          optimizer=lambda ps: torch.optim.AdamW(ps, lr=1e-4, weight_decay=0.01))
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_subset_is_a_seeded_sample_not_a_prefix(minilm):
    _, tok = minilm
    data = encode(load_snippets("movie", "test"), tok)
    sample = data.subset(300)
    assert len(sample) == 300 and torch.equal(sample.labels, data.subset(300).labels)
    assert 0.35 < sample.labels.float().mean() < 0.65  # the first 300 rows are mostly positive
    assert data.subset(5000) is data
    with pytest.raises(ValueError, match="n must"):
        data.subset(0)
