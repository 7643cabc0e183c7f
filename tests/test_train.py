"""minilora.train: the training loop (loss, seeds, evaluation, hooks, optimizers, arguments),
prediction and evaluation, the positive-class probability."""

import copy

import pytest
import torch

from minilora.data import Encoded, encode, load_snippets
from minilora.train import History, evaluate, positive_probability, predict, quiet, train


def balanced_tweets(tokenizer):
    """16 training tweets, 8 positive and 8 negative, encoded at max_length 24."""
    rows = load_snippets("tweets", "train")
    balanced = [s for s in rows if s.label == 1][:8] + [s for s in rows if s.label == 0][:8]
    return encode(balanced, tokenizer, max_length=24)


@pytest.fixture
def tiny(minilm):
    model, tok = minilm
    return model, balanced_tweets(tok)


@pytest.fixture(scope="module")
def fitted(_minilm_once):
    """(model, data, history) after 15 steps on the 16 balanced tweets: trained once per module."""
    model, tok = copy.deepcopy(_minilm_once[0]), _minilm_once[1]
    data = balanced_tweets(tok)
    return model, data, train(model, data, steps=15, batch_size=16, lr=2e-4, warmup=0.0, progress=False)


def test_history_has_one_loss_per_step(fitted):
    _, _, hist = fitted
    assert len(hist.loss) == 15


def test_loss_decreases_on_a_small_batch(fitted):
    _, _, hist = fitted
    assert sum(hist.loss[-3:]) / 3 < 0.5 * sum(hist.loss[:3]) / 3


def test_trained_model_fits_its_small_batch(fitted):
    model, data, _ = fitted
    assert evaluate(model, data) == 1.0


def test_history_records_time_and_memory(fitted):
    _, _, hist = fitted
    assert hist.wall_time > 0 and hist.seconds_per_step > 0
    assert hist.peak_memory_bytes is None or hist.peak_memory_bytes > 0


def test_same_seed_same_trajectory(minilm):
    model, tok = minilm
    data = encode(load_snippets("tweets", "train")[:32], tok, max_length=24)
    twin = copy.deepcopy(model)
    a = train(model, data, steps=3, batch_size=8, lr=1e-4, progress=False).loss
    b = train(twin, data, steps=3, batch_size=8, lr=1e-4, progress=False).loss
    assert a == b


@pytest.fixture(scope="module")
def hooked(_minilm_once):
    """(history, steps seen by on_step) of 4 steps with evaluation every 2 and both hooks set."""
    model, tok = copy.deepcopy(_minilm_once[0]), _minilm_once[1]
    data = balanced_tweets(tok)
    calls = []
    hist = train(model, data, steps=4, batch_size=8, lr=1e-5, eval_data=data, eval_every=2,
                 extra_loss=lambda m: torch.zeros(()), on_step=lambda m, s: calls.append(s), progress=False)
    return hist, calls


def test_eval_data_is_scored_every_eval_every_steps(hooked):
    hist, _ = hooked
    assert hist.eval_steps == [2, 4] and len(hist.eval_accuracy) == 2


def test_on_step_runs_after_every_step(hooked):
    _, calls = hooked
    assert calls == [1, 2, 3, 4]


def test_history_round_trips_through_to_dict(hooked):
    hist, _ = hooked
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


def test_default_optimizer_is_minilora_adamw_equal_to_torch(minilm):
    model, tok = minilm
    data = encode(load_snippets("tweets", "train")[:16], tok, max_length=24)
    twin = copy.deepcopy(model)
    train(model, data, steps=3, batch_size=8, lr=1e-4, progress=False)  # default: minilora AdamW
    train(twin, data, steps=3, batch_size=8, lr=1e-4, progress=False,
          optimizer=lambda ps: torch.optim.AdamW(ps, lr=1e-4, weight_decay=0.01))
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kw,match", [
    (dict(steps=0), "steps"), (dict(lr=-1.0), "lr"), (dict(lr=float("nan")), "lr"),
    (dict(clip=0), "clip"), (dict(warmup=1.0), "warmup"), (dict(eval_every=5), "eval_data"),
    (dict(optimizer="adam"), "optimizer"),
])
def test_train_rejects_a_bad_argument_naming_it(tiny, kw, match):
    model, data = tiny
    with pytest.raises((ValueError, TypeError), match=match):
        train(model, data, progress=False, **kw)


def test_nothing_trainable_is_an_error(tiny):
    model, data = tiny
    for p in model.parameters():
        p.requires_grad = False
    with pytest.raises(ValueError, match="requires_grad"):
        train(model, data, steps=1, progress=False)


def test_quiet_follows_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert quiet()
    monkeypatch.setenv("CI", "false")
    assert not quiet()
    monkeypatch.delenv("CI")
    assert not quiet()


# --- predict, evaluate, positive_probability --------------------------------------------------------

def test_predict_returns_float32_logits_per_row(tiny):
    model, data = tiny
    logits = predict(model, data)
    assert logits.shape == (16, 2) and logits.dtype == torch.float32


def test_predict_restores_the_training_mode(tiny):
    model, data = tiny
    model.train()
    predict(model, data)
    assert model.training  # restored


def test_predict_keeps_row_order(minilm_read_only):
    model, tok = minilm_read_only
    data = encode(load_snippets("amazon", "val")[:40], tok)
    whole = predict(model, data, batch_size=7)  # scored in length order, returned in row order
    for i in range(0, 40, 9):
        row = Encoded(data.input_ids[i:i + 1], data.attention_mask[i:i + 1], data.labels[i:i + 1])
        assert torch.allclose(whole[i], predict(model, row)[0], atol=1e-5)


def test_positive_probability_rejects_no_texts(minilm_read_only):
    model, tok = minilm_read_only
    with pytest.raises(ValueError, match="texts"):
        positive_probability(model, tok, [])
