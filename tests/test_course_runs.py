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
