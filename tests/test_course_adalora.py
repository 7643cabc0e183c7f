"""minilora.course.adalora: a tiny AdaLoRA run records its rank pattern and replays from the cache."""

from __future__ import annotations

import pytest

from minilora.adalora import svd_layers
from minilora.course.adalora import adalora_fine_tune

KW = dict(
    targets=("query", "value"),
    init_r=4,
    target_r=2,
    steps=6,
    tinit=1,
    tfinal=2,
    delta_t=1,
    batch_size=4,
    test_n=12,
    val_n=12,
    record_every=2,
)


@pytest.fixture(scope="module")
def run_and_replay(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MINILORA_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        run = adalora_fine_tune(**KW)
        again = adalora_fine_tune(**KW)
    finally:
        mp.undo()
    return run, again


def test_the_budget_is_recorded_at_every_step_and_ends_at_the_target(run_and_replay):
    run, _ = run_and_replay
    assert len(run.budget) == 6 and run.budget[0] == 12 * 4 and run.budget[-1] == 12 * 2


def test_the_final_pattern_keeps_the_target_budget(run_and_replay):
    run, _ = run_and_replay
    assert run.rank_steps == (0, 2, 4, 6) and sum(run.kept.values()) <= 12 * 2
    assert all(
        int((layer.lora_E != 0).sum()) <= layer.rank_mask.sum() for layer in svd_layers(run.model).values()
    )


def test_a_replay_from_the_cache_restores_the_kept_triplets(run_and_replay):
    run, again = run_and_replay
    assert again.from_cache and not run.from_cache
    masks = [layer.rank_mask for layer in svd_layers(again.model).values()]
    assert [int(m.sum()) for m in masks] == list(run.kept.values())
    assert again.test_correct == run.test_correct


def test_kept_at_returns_the_last_pattern_recorded_before_a_step(run_and_replay):
    run, _ = run_and_replay
    assert run.kept_at(0) == {n: 4 for n in run.layer_names} and run.kept_at(5) == dict(
        zip(run.layer_names, run.rank_history[2])
    )


def test_bad_arguments_are_refused_before_training():
    with pytest.raises(ValueError, match="domain"):
        adalora_fine_tune(domain="poems")
    with pytest.raises(ValueError, match="orth_weight"):
        adalora_fine_tune(orth_weight=-1)
