"""minilora.course.runs: the shared fine-tunes (LoRA runs and baselines), trained once and cached."""

from __future__ import annotations

import pytest
import torch

from minilora.course.runs import fine_tune_baseline, freeze_all_but_head, lora_fine_tune
from minilora.lora import lora_layers

KW = dict(targets=("value",), r=2, alpha=4, steps=2, batch_size=8, test_n=16, val_n=16, eval_every=1)


@pytest.fixture(scope="module")
def run_and_replay(tmp_path_factory):
    """A tiny LoRA run (W_v, r = 2, 2 steps) and the same call again, replayed from the cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("MINILORA_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        run = lora_fine_tune(**KW)
        again = lora_fine_tune(**KW)
    finally:
        mp.undo()
    return run, again


def test_lora_fine_tune_trains_and_records_a_learning_curve(run_and_replay):
    run, _ = run_and_replay
    assert not run.from_cache and run.test_n == 16 and run.history.eval_steps == [1, 2]


def test_lora_fine_tune_trains_only_the_adapter_and_the_head(run_and_replay):
    run, _ = run_and_replay
    assert run.lora_parameters == 6 * 2 * (384 + 384) and run.trainable == run.lora_parameters + 770


def test_lora_fine_tune_measures_two_fp32_moments_per_trained_number(run_and_replay):
    run, _ = run_and_replay
    assert run.optimizer_state_bytes == 2 * 4 * run.trainable  # two fp32 moments per trained number


def test_lora_fine_tune_changes_b(run_and_replay):
    run, _ = run_and_replay
    assert any(layer.lora_B.abs().sum() > 0 for layer in lora_layers(run.model).values())  # it trained


def test_a_second_call_replays_the_run_from_the_cache(run_and_replay):
    run, again = run_and_replay
    assert again.from_cache and again.test_accuracy == run.test_accuracy


def test_the_replayed_run_has_the_trained_adapters_and_head(run_and_replay):
    run, again = run_and_replay
    for (_, a), (_, b) in zip(lora_layers(run.model).items(), lora_layers(again.model).items()):
        assert torch.equal(a.lora_B, b.lora_B)
    assert torch.equal(run.model.classifier.weight, again.model.classifier.weight)


def test_lora_fine_tune_rejects_an_unknown_domain():
    with pytest.raises(ValueError, match="domain must be"):
        lora_fine_tune(domain="books")


def test_fine_tune_baseline_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match="kind must be one of"):
        fine_tune_baseline("lora")


def test_freeze_all_but_head_leaves_only_the_classifier_trainable(minilm):
    model, _ = minilm
    assert freeze_all_but_head(model) == 770
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.weight", "classifier.bias"}


def test_a_run_records_per_row_test_correctness_and_a_validation_score(run_and_replay):
    run, again = run_and_replay
    assert len(run.test_correct) == run.test_n == 16
    assert sum(run.test_correct) / 16 == pytest.approx(run.test_accuracy)
    assert run.val_n == 16 and 0.0 <= run.val_accuracy <= 1.0
    assert again.test_correct == run.test_correct and again.val_accuracy == run.val_accuracy


# --- select_on_validation: recipes chosen on validation, the same number per method ---------------

def _fake_run(val_accuracy, test_accuracy=0.5):
    from minilora.course.runs import FineTune
    from minilora.train import History

    return FineTune("lora", torch.nn.Linear(1, 1), None, History(), test_accuracy, 10, 1, 8, False,
                    val_accuracy=val_accuracy, val_n=10)


def test_select_on_validation_keeps_the_best_validation_recipe_per_method():
    from minilora.course.runs import select_on_validation

    table = {("a", 1): 0.7, ("a", 2): 0.8, ("b", 1): 0.9, ("b", 2): 0.6}
    calls = []

    def fit(method, lr):
        calls.append((method, lr))
        return _fake_run(table[method, lr], test_accuracy=lr / 10)

    chosen = select_on_validation({"a": [dict(lr=1), dict(lr=2)], "b": [dict(lr=1), dict(lr=2)]}, fit)
    assert calls == [("a", 1), ("a", 2), ("b", 1), ("b", 2)]
    assert chosen["a"].recipe == dict(lr=2) and chosen["b"].recipe == dict(lr=1)
    assert chosen["a"].run.test_accuracy == 0.2 and chosen["b"].val_accuracy == 0.9
    assert chosen["a"].trials == [(dict(lr=1), 0.7), (dict(lr=2), 0.8)]
    assert "lr=2: 80.0 %" in chosen["a"].summary()


def test_select_on_validation_refuses_unequal_tuning_budgets():
    from minilora.course.runs import select_on_validation

    with pytest.raises(ValueError, match="same number of recipes"):
        select_on_validation({"a": [dict(lr=1)], "b": [dict(lr=1), dict(lr=2)]},
                             lambda m, **r: _fake_run(0.5))


def test_select_on_validation_needs_a_validation_score():
    from minilora.course.runs import select_on_validation

    with pytest.raises(TypeError, match="val_accuracy"):
        select_on_validation({"a": [dict(lr=1)]}, lambda m, **r: _fake_run(None))


def test_inference_latency_times_every_model_interleaved(tiny_bert, tiny_data):
    from minilora.course.runs import inference_latency

    times = inference_latency({"a": tiny_bert(), "b": tiny_bert(seed=1)}, tiny_data(8), repeats=3)
    assert set(times) == {"a", "b"} and all(len(t) == 3 and min(t) > 0 for t in times.values())


def test_pooled_features_are_the_mean_pool_classifiers_features(tiny_bert, tiny_data):
    from minilora.course.runs import pooled_features
    from minilora.models import MeanPoolClassifier

    model, data = MeanPoolClassifier(tiny_bert()), tiny_data(5)
    b = data.batch(torch.arange(5))
    torch.testing.assert_close(pooled_features(model, data, batch_size=2),
                               model.features(b["input_ids"], b["attention_mask"]))
