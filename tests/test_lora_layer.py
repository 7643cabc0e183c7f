"""LoRA (minilora.lora, minilora.adapter_io): invariants, bad input, and agreement with peft."""

from __future__ import annotations

import copy
import math
import os

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from minilora.lora.peft_format import load_adapter, read_adapter, save_adapter
from minilora.data import encode, load_snippets
from minilora.lora import LoRALinear, apply_lora, lora_layers, lora_scaling, mark_only_lora_trainable


@pytest.fixture(scope="module")
def minilm(_minilm_once):  # (base model in eval mode, a batch of 16 movie snippets); shared, read-only
    model, tokenizer = copy.deepcopy(_minilm_once[0]), _minilm_once[1]
    model.eval()
    batch = encode(load_snippets("movie", "test")[:16], tokenizer, max_length=32).batch(torch.arange(16))
    batch.pop("labels")
    return model, batch


@pytest.fixture
def model(minilm):
    return copy.deepcopy(minilm[0])


@pytest.fixture
def inputs(minilm):
    return minilm[1]


def logits(model, inputs):
    model.eval()
    with torch.no_grad():
        return model(**inputs).logits


def randomize_b(model, seed=1, std=0.05):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=gen) * std)


# --- the layer ------------------------------------------------------------------------------

@pytest.mark.parametrize("init", ["kaiming", "gaussian"])
def test_b_zero_leaves_minilm_logits_bitwise_identical(model, inputs, init):
    before = logits(model, inputs)
    names = apply_lora(model, ("query", "value"), r=8, alpha=16, init=init, seed=0)
    assert len(names) == 12
    assert all(layer.lora_A.abs().sum() > 0 for layer in lora_layers(model).values())  # A is random
    assert torch.equal(logits(model, inputs), before)


def test_merge_equals_unmerged_and_unmerge_restores_w(minilm, model, inputs):
    apply_lora(model, ("query", "value"), r=8, alpha=16, seed=0)
    randomize_b(model)
    w0 = {n: layer.weight.clone() for n, layer in lora_layers(model).items()}
    unmerged = logits(model, inputs)
    assert not torch.allclose(unmerged, logits(minilm[0], inputs), atol=1e-3)  # B matters
    for layer in lora_layers(model).values():
        layer.merge()
    merged_w = {n: layer.weight.clone() for n, layer in lora_layers(model).items()}
    for layer in lora_layers(model).values():
        layer.merge()  # idempotent
        assert layer.merged
    assert all(torch.equal(merged_w[n], layer.weight) for n, layer in lora_layers(model).items())
    torch.testing.assert_close(logits(model, inputs), unmerged, atol=1e-5, rtol=0)
    for layer in lora_layers(model).values():
        layer.unmerge()
        layer.unmerge()  # idempotent
        assert not layer.merged
    for n, layer in lora_layers(model).items():
        torch.testing.assert_close(layer.weight, w0[n], atol=1e-6, rtol=0)
    torch.testing.assert_close(logits(model, inputs), unmerged, atol=1e-5, rtol=0)


@settings(max_examples=30, deadline=None)
@given(d_in=st.integers(1, 48), d_out=st.integers(1, 48), data=st.data(),
       alpha=st.floats(0.5, 64), rslora=st.booleans(), bias=st.booleans())
def test_layer_properties(d_in, d_out, data, alpha, rslora, bias):
    r = data.draw(st.integers(1, min(d_in, d_out)))
    torch.manual_seed(0)
    base = nn.Linear(d_in, d_out, bias=bias)
    layer = LoRALinear(copy.deepcopy(base), r=r, alpha=alpha, rslora=rslora)
    x = torch.randn(3, 5, d_in)
    assert torch.equal(layer(x), base(x))  # B = 0
    assert layer.lora_A.shape == (r, d_in) and layer.lora_B.shape == (d_out, r)
    assert layer.scaling == pytest.approx(alpha / (math.sqrt(r) if rslora else r))
    assert sum(p.numel() for p in layer.parameters() if p.requires_grad) == r * (d_in + d_out)
    assert abs(layer.lora_A).max() <= 1 / math.sqrt(d_in) + 1e-7  # kaiming_uniform_(a=√5) bound
    with torch.no_grad():
        layer.lora_B.normal_()
    scale = alpha / (math.sqrt(r) if rslora else r)
    expected = (base(x).double() + scale * x.double() @ layer.lora_A.double().T @ layer.lora_B.double().T)
    tol = dict(rtol=1e-5, atol=1e-5 * expected.abs().max().item())  # float32 rounding vs float64
    torch.testing.assert_close(layer(x).double(), expected, **tol)
    layer.merge()
    torch.testing.assert_close(layer(x).double(), expected, **tol)
    layer.unmerge()  # W0 + ΔW - ΔW: exact up to rounding at the scale of |W0| + |ΔW|
    ulp = torch.finfo(torch.float32).eps * (base.weight.abs() + layer.delta_weight().abs()).max()
    torch.testing.assert_close(layer.weight, base.weight, atol=4 * ulp.item(), rtol=0)


def test_gaussian_init_std():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(512, 512), r=4, init="gaussian")
    assert layer.lora_A.std().item() == pytest.approx(1 / 4, rel=0.05)
    assert torch.count_nonzero(layer.lora_B) == 0


def test_base_is_frozen_and_gets_no_gradient():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(8, 6), r=2)
    layer(torch.randn(4, 8)).sum().backward()
    assert layer.weight.grad is None and layer.bias.grad is None
    assert layer.lora_B.grad is not None and layer.lora_A.grad is not None


def test_dropout_touches_only_the_adapter_path():
    torch.manual_seed(0)
    base = nn.Linear(16, 12)
    layer = LoRALinear(copy.deepcopy(base), r=4, alpha=4, dropout=0.5).train()
    x = torch.randn(10, 16)
    assert torch.equal(layer(x), base(x))  # B = 0: dropout cannot change the output
    with torch.no_grad():
        layer.lora_B.normal_()
    torch.manual_seed(123)
    out = layer(x)
    torch.manual_seed(123)
    dropped = F.dropout(x, 0.5, training=True)  # the same mask
    torch.testing.assert_close(out, base(x) + dropped @ layer.lora_A.T @ layer.lora_B.T)
    assert not torch.allclose(out, base(x) + x @ layer.lora_A.T @ layer.lora_B.T)
    layer.eval()  # no dropout at inference
    torch.testing.assert_close(layer(x), base(x) + x @ layer.lora_A.T @ layer.lora_B.T)


def test_merge_refuses_non_finite_delta():
    layer = LoRALinear(nn.Linear(4, 4), r=2)
    w = layer.weight.clone()
    with torch.no_grad():
        layer.lora_B.fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        layer.merge()
    assert not layer.merged and torch.equal(layer.weight, w)


# --- the model ------------------------------------------------------------------------------

def test_trainable_count_qv_r8(model):
    apply_lora(model, ("query", "value"), r=8, alpha=8)
    n = mark_only_lora_trainable(model, extra=())
    assert n == 12 * 8 * (384 + 384) == 73_728
    assert mark_only_lora_trainable(model) == 73_728 + 384 * 2 + 2  # + the classifier head
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n in trainable if ".lora_" in n or n.startswith("classifier.")}


def test_regex_and_suffix_targets_agree(model):
    other = copy.deepcopy(model)
    names = apply_lora(model, ("query", "value"), seed=3)
    assert names == apply_lora(other, r"bert\.encoder\.layer\.\d+\.attention\.self\.(query|value)", seed=3)
    for (_, a), (_, b) in zip(lora_layers(model).items(), lora_layers(other).items()):
        assert torch.equal(a.lora_A, b.lora_A)  # the seed makes A reproducible


def test_outputs_equal_peft_given_same_a_and_b(model, inputs):
    peft = pytest.importorskip("peft", reason="peft is the reference LoRA implementation")
    reference = peft.get_peft_model(copy.deepcopy(model), peft.LoraConfig(
        r=8, lora_alpha=16, target_modules=["query", "value"], use_rslora=True))
    apply_lora(model, ("query", "value"), r=8, alpha=16, rslora=True)
    randomize_b(model)
    ref_modules = dict(reference.base_model.model.named_modules())
    with torch.no_grad():
        for name, layer in lora_layers(model).items():
            ref_modules[name].lora_A["default"].weight.copy_(layer.lora_A)
            ref_modules[name].lora_B["default"].weight.copy_(layer.lora_B)
    torch.testing.assert_close(logits(model, inputs), logits(reference, inputs), atol=1e-6, rtol=0)


@settings(max_examples=15, deadline=None)
@given(d_in=st.integers(2, 40), d_out=st.integers(2, 40), data=st.data(), alpha=st.integers(1, 32),
       rslora=st.booleans())
def test_layer_equals_peft_layer(d_in, d_out, data, alpha, rslora):
    peft = pytest.importorskip("peft", reason="peft is the reference LoRA implementation")
    r = data.draw(st.integers(1, min(d_in, d_out)))
    torch.manual_seed(0)
    holder = nn.Sequential()
    holder.add_module("lin", nn.Linear(d_in, d_out))
    mine = LoRALinear(copy.deepcopy(holder.lin), r=r, alpha=alpha, rslora=rslora)
    ref = peft.get_peft_model(holder, peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=["lin"],
                                                      use_rslora=rslora)).base_model.model.lin
    with torch.no_grad():
        mine.lora_B.normal_()
        ref.lora_A["default"].weight.copy_(mine.lora_A)
        ref.lora_B["default"].weight.copy_(mine.lora_B)
    x = torch.randn(7, d_in)
    torch.testing.assert_close(mine(x), ref(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(mine.delta_weight(), ref.get_delta_weight("default"), atol=1e-6, rtol=1e-6)


# --- adapter files --------------------------------------------------------------------------

def test_adapter_roundtrip_minilora_to_peft_and_back(model, inputs, tmp_path):
    peft = pytest.importorskip("peft", reason="peft is the reference LoRA implementation")
    fresh = copy.deepcopy(model)
    apply_lora(model, ("query", "value"), r=8, alpha=16, seed=0)
    randomize_b(model)
    with torch.no_grad():
        model.classifier.weight.normal_()  # the trained head travels with the adapter
    expected = logits(model, inputs)
    save_adapter(model, tmp_path / "mine")
    assert sorted(os.listdir(tmp_path / "mine")) == ["adapter_config.json", "adapter_model.safetensors"]
    config, tensors = read_adapter(tmp_path / "mine")
    assert config["modules_to_save"] == ["classifier"] and config["r"] == 8 and config["lora_alpha"] == 16
    assert "bert.encoder.layer.0.attention.self.query.lora_A.weight" in tensors
    # minilora -> peft
    in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(fresh), str(tmp_path / "mine"))
    torch.testing.assert_close(logits(in_peft, inputs), expected, atol=1e-6, rtol=0)
    # minilora -> minilora (into a plain model: layers are created)
    again = copy.deepcopy(fresh)
    assert len(load_adapter(again, tmp_path / "mine")) == 12
    assert torch.equal(logits(again, inputs), expected)
    # peft -> minilora
    in_peft.save_pretrained(str(tmp_path / "peft"))
    back = copy.deepcopy(fresh)
    load_adapter(back, tmp_path / "peft")
    torch.testing.assert_close(logits(back, inputs), expected, atol=1e-6, rtol=0)


def test_mixed_ranks_and_rslora_round_trip_through_peft(model, inputs, tmp_path):
    peft = pytest.importorskip("peft", reason="peft is the reference LoRA implementation")
    fresh = copy.deepcopy(model)
    apply_lora(model, ("query", "value"), r=8, alpha=16, rslora=True, seed=0)
    apply_lora(model, ("key",), r=2, alpha=4, rslora=True, seed=1)
    randomize_b(model)
    save_adapter(model, tmp_path / "a", extra=())
    config, _ = read_adapter(tmp_path / "a")
    assert config["modules_to_save"] is None and set(config["rank_pattern"].values()) == {2}
    in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(fresh), str(tmp_path / "a"))
    torch.testing.assert_close(logits(in_peft, inputs), logits(model, inputs), atol=1e-6, rtol=0)


def test_swapping_adapters_on_a_merged_model(model, inputs, tmp_path):
    apply_lora(model, ("query", "value"), r=4, alpha=8, seed=0)
    randomize_b(model, seed=1)
    first = logits(model, inputs)
    save_adapter(model, tmp_path / "one")
    randomize_b(model, seed=2)
    second = logits(model, inputs)
    for layer in lora_layers(model).values():
        layer.merge()
    load_adapter(model, tmp_path / "one")
    assert all(layer.merged for layer in lora_layers(model).values())
    torch.testing.assert_close(logits(model, inputs), first, atol=1e-5, rtol=0)
    assert not torch.allclose(first, second)


def test_loading_into_a_mismatched_model_names_the_keys(model, tmp_path):
    apply_lora(copy.deepcopy(model), ("query", "value"), r=8)
    src = copy.deepcopy(model)
    apply_lora(src, ("query", "value"), r=8)
    save_adapter(src, tmp_path / "qv8")
    wrong_rank = copy.deepcopy(model)
    apply_lora(wrong_rank, ("query", "value"), r=4)
    msg = r"layer\.0\.attention\.self\.query\.lora_A\.weight: shape \(8, 384\)"
    with pytest.raises(ValueError, match=msg):
        load_adapter(wrong_rank, tmp_path / "qv8")
    wrong_targets = copy.deepcopy(model)
    apply_lora(wrong_targets, ("key",), r=8)
    a_before = lora_layers(wrong_targets)["bert.encoder.layer.0.attention.self.key"].lora_A.clone()
    msg = r"attention\.self\.key\.lora_A\.weight: the model has this LoRA layer"
    with pytest.raises(ValueError, match=msg):
        load_adapter(wrong_targets, tmp_path / "qv8")
    assert torch.equal(lora_layers(wrong_targets)["bert.encoder.layer.0.attention.self.key"].lora_A, a_before)
    assert "bert.encoder.layer.0.attention.self.query" not in lora_layers(wrong_targets)  # nothing changed
    other = nn.Sequential(nn.Linear(384, 384))
    with pytest.raises(ValueError, match="the model has no module bert.encoder"):
        load_adapter(other, tmp_path / "qv8")
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_adapter(model, tmp_path / "nowhere")


def test_save_is_atomic_and_rejects_a_file_path(model, tmp_path):
    apply_lora(model, ("value",), r=2)
    save_adapter(model, tmp_path / "ad")
    save_adapter(model, tmp_path / "ad")  # overwrite in place
    assert sorted(os.listdir(tmp_path / "ad")) == ["adapter_config.json", "adapter_model.safetensors"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="path must be a folder"):
        save_adapter(model, tmp_path / "file")
    with pytest.raises(ValueError, match="no LoRALinear"):
        save_adapter(nn.Linear(2, 2), tmp_path / "x")


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(r=0), "r must be"), (dict(r=-3), "r must be"),
    (dict(r=9), r"r must be an int in \[1, 8\] \(min\(d_in, d_out\)"),
    (dict(r=2.0), "r must be"), (dict(alpha=float("nan")), "alpha must be a finite"),
    (dict(alpha=float("inf")), "alpha must be a finite"), (dict(dropout=1.0), "dropout must be"),
    (dict(dropout=-0.1), "dropout must be"), (dict(init="xavier"), "init must be one of"),
])
def test_bad_layer_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoRALinear(nn.Linear(8, 16), **kwargs)


def test_bad_targets(model):
    with pytest.raises(TypeError, match="base must be a torch.nn.Linear"):
        LoRALinear(nn.Conv1d(2, 2, 1))
    msg = r"matched no module; the Linear modules are: .*attention\.self\.key"
    with pytest.raises(ValueError, match=msg):
        apply_lora(model, ("qproj",))
    with pytest.raises(TypeError, match="LayerNorm"):
        apply_lora(model, ("LayerNorm",))
    with pytest.raises(TypeError, match="targets must be"):
        apply_lora(model, 42)
    with pytest.raises(ValueError, match="not a valid regular expression"):
        apply_lora(model, "(query")
    with pytest.raises(ValueError, match=r"r must be an int in \[1, 384\] \(min\(d_in, d_out\)"):
        apply_lora(model, ("query",), r=385)
    assert not lora_layers(model)  # a rejected call leaves the model untouched
    with pytest.raises(ValueError, match="call apply_lora"):
        mark_only_lora_trainable(model)
    apply_lora(model, ("query",), r=2)
    with pytest.raises(ValueError, match="already has a LoRA adapter"):
        apply_lora(model, ("query",), r=2)
    with pytest.raises(ValueError, match="extra="):
        mark_only_lora_trainable(model, extra=("head",))
    with pytest.raises(ValueError, match="alpha must be a finite"):
        lora_scaling(float("nan"), 4)
