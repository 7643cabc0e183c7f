"""minilora.lora.inject: choosing modules by name, swapping them for LoRA layers, freezing the
rest, counting the cost; agreement with peft on MiniLM."""

from __future__ import annotations

import copy

import pytest
import torch

from minilora.lora import apply_lora, lora_layers, lora_parameter_count, mark_only_lora_trainable

# --- apply_lora ---------------------------------------------------------------------------------


@pytest.mark.parametrize("init", ["kaiming", "gaussian"])
def test_apply_lora_on_query_value_adapts_twelve_layers(minilm_model, init):
    names = apply_lora(minilm_model, ("query", "value"), r=8, alpha=16, init=init, seed=0)
    assert len(names) == 12


@pytest.mark.parametrize("init", ["kaiming", "gaussian"])
def test_apply_lora_draws_a_random_a(minilm_model, init):
    apply_lora(minilm_model, ("query", "value"), r=8, alpha=16, init=init, seed=0)
    assert all(layer.lora_A.abs().sum() > 0 for layer in lora_layers(minilm_model).values())  # A is random


@pytest.mark.parametrize("init", ["kaiming", "gaussian"])
def test_b_zero_leaves_minilm_logits_bitwise_identical(minilm_model, minilm_inputs, logits, init):
    before = logits(minilm_model, minilm_inputs)
    apply_lora(minilm_model, ("query", "value"), r=8, alpha=16, init=init, seed=0)
    assert torch.equal(logits(minilm_model, minilm_inputs), before)


def test_regex_and_suffix_targets_select_the_same_modules(minilm_model):
    other = copy.deepcopy(minilm_model)
    names = apply_lora(minilm_model, ("query", "value"), seed=3)
    assert names == apply_lora(other, r"bert\.encoder\.layer\.\d+\.attention\.self\.(query|value)", seed=3)


def test_seed_makes_a_reproducible(minilm_model):
    other = copy.deepcopy(minilm_model)
    apply_lora(minilm_model, ("query", "value"), seed=3)
    apply_lora(other, r"bert\.encoder\.layer\.\d+\.attention\.self\.(query|value)", seed=3)
    for (_, a), (_, b) in zip(lora_layers(minilm_model).items(), lora_layers(other).items()):
        assert torch.equal(a.lora_A, b.lora_A)  # the seed makes A reproducible


def test_outputs_equal_peft_given_same_a_and_b(minilm_model, minilm_inputs, logits, randomize_b):
    peft = pytest.importorskip("peft", reason="peft is the reference LoRA implementation")
    reference = peft.get_peft_model(copy.deepcopy(minilm_model), peft.LoraConfig(
        r=8, lora_alpha=16, target_modules=["query", "value"], use_rslora=True))
    apply_lora(minilm_model, ("query", "value"), r=8, alpha=16, rslora=True)
    randomize_b(minilm_model)
    ref_modules = dict(reference.base_model.model.named_modules())
    with torch.no_grad():
        for name, layer in lora_layers(minilm_model).items():
            ref_modules[name].lora_A["default"].weight.copy_(layer.lora_A)
            ref_modules[name].lora_B["default"].weight.copy_(layer.lora_B)
    torch.testing.assert_close(logits(minilm_model, minilm_inputs), logits(reference, minilm_inputs),
                               atol=1e-6, rtol=0)


# --- apply_lora: bad targets and arguments -----------------------------------------------------

def test_apply_lora_lists_the_linear_modules_when_nothing_matches(minilm_model):
    msg = r"matched no module; the Linear modules are: .*attention\.self\.key"
    with pytest.raises(ValueError, match=msg):
        apply_lora(minilm_model, ("qproj",))


def test_apply_lora_rejects_a_match_that_is_not_linear(minilm_model):
    with pytest.raises(TypeError, match="LayerNorm"):
        apply_lora(minilm_model, ("LayerNorm",))


def test_apply_lora_rejects_targets_that_are_not_names(minilm_model):
    with pytest.raises(TypeError, match="targets must be"):
        apply_lora(minilm_model, 42)


def test_apply_lora_rejects_an_invalid_regex(minilm_model):
    with pytest.raises(ValueError, match="not a valid regular expression"):
        apply_lora(minilm_model, "(query")


def test_apply_lora_rejects_rank_above_min_dim(minilm_model):
    with pytest.raises(ValueError, match=r"r must be an int in \[1, 384\] \(min\(d_in, d_out\)"):
        apply_lora(minilm_model, ("query",), r=385)


def test_rejected_apply_lora_leaves_the_model_untouched(minilm_model):
    for targets, kw, err in [(("qproj",), {}, ValueError), (("LayerNorm",), {}, TypeError),
                             (42, {}, TypeError), ("(query", {}, ValueError),
                             (("query",), dict(r=385), ValueError)]:
        with pytest.raises(err):
            apply_lora(minilm_model, targets, **kw)
    assert not lora_layers(minilm_model)  # a rejected call leaves the model untouched


def test_apply_lora_refuses_a_second_adapter_on_a_layer(minilm_model):
    apply_lora(minilm_model, ("query",), r=2)
    with pytest.raises(ValueError, match="already has a LoRA adapter"):
        apply_lora(minilm_model, ("query",), r=2)


# --- mark_only_lora_trainable ---------------------------------------------------------------------

def test_mark_only_lora_trainable_without_extra_trains_only_the_adapters(minilm_model):
    apply_lora(minilm_model, ("query", "value"), r=8, alpha=8)
    n = mark_only_lora_trainable(minilm_model, extra=())
    assert n == 12 * 8 * (384 + 384) == 73_728


def test_mark_only_lora_trainable_keeps_the_classifier_head_trainable(minilm_model):
    apply_lora(minilm_model, ("query", "value"), r=8, alpha=8)
    assert mark_only_lora_trainable(minilm_model) == 73_728 + 384 * 2 + 2  # + the classifier head


def test_mark_only_lora_trainable_freezes_everything_else(minilm_model):
    apply_lora(minilm_model, ("query", "value"), r=8, alpha=8)
    mark_only_lora_trainable(minilm_model)
    trainable = {n for n, p in minilm_model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in trainable if ".lora_" in n or n.startswith("classifier.")}


def test_mark_only_lora_trainable_needs_apply_lora_first(minilm_model):
    with pytest.raises(ValueError, match="call apply_lora"):
        mark_only_lora_trainable(minilm_model)


def test_mark_only_lora_trainable_rejects_an_extra_module_that_is_not_there(minilm_model):
    apply_lora(minilm_model, ("query",), r=2)
    with pytest.raises(ValueError, match="extra="):
        mark_only_lora_trainable(minilm_model, extra=("head",))


# --- lora_parameter_count ---------------------------------------------------------------------------

@pytest.mark.parametrize("targets, r, expected", [
    (("query", "value"), 8, 73_728), (("query",), 16, 73_728),
    (("query", "key", "value", "attention.output.dense"), 4, 73_728),
    (("intermediate.dense",), 1, 6 * (384 + 1536)),
])
def test_lora_parameter_count_is_r_times_d_in_plus_d_out(minilm_read_only, targets, r, expected):
    model, _ = minilm_read_only  # read only: the count does not change the model
    assert lora_parameter_count(model, targets, r) == expected


def test_lora_parameter_count_rejects_targets_that_match_nothing(minilm_read_only):
    with pytest.raises(ValueError, match="matched no module"):
        lora_parameter_count(minilm_read_only[0], ("nothing",), 1)


def test_lora_parameter_count_rejects_rank_zero(minilm_read_only):
    with pytest.raises(ValueError, match="r must be"):
        lora_parameter_count(minilm_read_only[0], ("query",), 0)
