"""minilora.course.qlora: a tiny QLoRA run trains through a 4-bit base, and replays from the cache."""

from __future__ import annotations

import pytest
import torch

from minilora.course.qlora import qlora_fine_tune
from minilora.lora import lora_layers
from minilora.qlora import Linear4bit, Linear8bit, quantized_layers

KW = dict(steps=3, batch_size=4, test_n=12, val_n=12, lr=2e-3)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MINILORA_CACHE", str(tmp_path_factory.mktemp("cache")))
    try:
        nf4 = qlora_fine_tune(quant="nf4", **KW)
        again = qlora_fine_tune(quant="nf4", **KW)
        plain = qlora_fine_tune(quant=None, **KW)
    finally:
        mp.undo()
    return nf4, again, plain


def test_the_base_is_4bit_and_only_adapters_and_head_train(runs):
    nf4, _, _ = runs
    layers = quantized_layers(nf4.model)
    assert layers and all(isinstance(m, Linear4bit) for m in layers.values())
    assert nf4.report["bits_per_parameter"] == pytest.approx(4.127, abs=0.01)
    trained = {n for n, p in nf4.model.named_parameters() if p.requires_grad}
    assert trained and all("lora_" in n or n.startswith("classifier.") for n in trained)
    assert nf4.optimizer_state_bytes == 2 * 4 * nf4.trainable  # AdamW m, v in fp32
    assert all(torch.isfinite(torch.tensor(nf4.history.loss)))


def test_the_adapters_moved_through_the_frozen_4bit_base(runs):
    nf4, _, _ = runs
    assert any(float(m.lora_B.detach().abs().max()) > 0 for m in lora_layers(nf4.model).values())


def test_a_replay_from_the_cache_gives_the_same_rows(runs):
    nf4, again, _ = runs
    assert again.from_cache and not nf4.from_cache
    assert again.test_correct == nf4.test_correct and again.val_accuracy == nf4.val_accuracy


def test_the_float_base_has_no_quantised_layer_and_the_same_adapter_shapes(runs):
    nf4, _, plain = runs
    assert plain.report is None and not quantized_layers(plain.model)
    assert plain.lora_parameters == nf4.lora_parameters and plain.trainable == nf4.trainable
    assert plain.test_n == nf4.test_n == 12


def test_int8_uses_the_8bit_layer():
    run = qlora_fine_tune(quant="int8", use_cache=False, **{**KW, "steps": 1})
    assert all(isinstance(m, Linear8bit) for m in quantized_layers(run.model).values())


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(quant="nf3"), "quant"),
        (dict(compute_dtype="half"), "compute_dtype"),
        (dict(steps=0), "steps"),
        (dict(domain="news"), "domain"),
        (dict(checkpointing="yes"), "checkpointing"),
    ],
)
def test_bad_arguments_are_refused_naming_the_parameter(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        qlora_fine_tune(**{**KW, **bad})
