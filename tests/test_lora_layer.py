"""minilora.lora.layer: LoRALinear's update, merge/unmerge, initialisation, dropout and arguments;
agreement with peft's LoRA layer."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from minilora.lora import LoRALinear, apply_lora, lora_layers, lora_scaling


@dataclass
class Case:
    d_in: int
    d_out: int
    r: int
    alpha: float
    rslora: bool
    bias: bool

    @property
    def scale(self):
        return self.alpha / (math.sqrt(self.r) if self.rslora else self.r)


@st.composite
def cases(draw):
    """A LoRALinear configuration: any layer size up to 48, any valid rank, α, rsLoRA, bias."""
    d_in, d_out = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    r = draw(st.integers(1, min(d_in, d_out)))
    return Case(d_in, d_out, r, draw(st.floats(0.5, 64)), draw(st.booleans()), draw(st.booleans()))


def build(case):
    """(base Linear, LoRALinear around a copy of it, input x of shape 3 × 5 × d_in)."""
    torch.manual_seed(0)
    base = nn.Linear(case.d_in, case.d_out, bias=case.bias)
    layer = LoRALinear(copy.deepcopy(base), r=case.r, alpha=case.alpha, rslora=case.rslora)
    return base, layer, torch.randn(3, 5, case.d_in)


def with_random_b(layer):
    with torch.no_grad():
        layer.lora_B.normal_()
    return layer


def reference_output(base, layer, x, case):
    """W0 x + b + (α/r)·B A x in float64, and a tolerance for float32 rounding."""
    expected = (base(x).double()
                + case.scale * x.double() @ layer.lora_A.double().T @ layer.lora_B.double().T)
    return expected, dict(rtol=1e-5, atol=1e-5 * expected.abs().max().item())


# --- properties of one layer (hypothesis) ----------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(case=cases())
def test_layer_with_b_zero_equals_its_base(case):
    base, layer, x = build(case)
    assert torch.equal(layer(x), base(x))  # B = 0


@settings(max_examples=30, deadline=None)
@given(case=cases())
def test_a_is_r_by_d_in_and_b_is_d_out_by_r(case):
    _, layer, _ = build(case)
    assert layer.lora_A.shape == (case.r, case.d_in) and layer.lora_B.shape == (case.d_out, case.r)


@settings(max_examples=30, deadline=None)
@given(case=cases())
def test_scaling_is_alpha_over_r_or_over_sqrt_r_with_rslora(case):
    _, layer, _ = build(case)
    assert layer.scaling == pytest.approx(case.alpha / (math.sqrt(case.r) if case.rslora else case.r))


@settings(max_examples=30, deadline=None)
@given(case=cases())
def test_only_a_and_b_are_trainable(case):
    _, layer, _ = build(case)
    assert sum(p.numel() for p in layer.parameters() if p.requires_grad) == case.r * (case.d_in + case.d_out)


@settings(max_examples=30, deadline=None)
@given(case=cases())
def test_kaiming_init_keeps_a_within_one_over_sqrt_d_in(case):
    _, layer, _ = build(case)
    assert abs(layer.lora_A).max() <= 1 / math.sqrt(case.d_in) + 1e-7  # kaiming_uniform_(a=√5) bound


@settings(max_examples=30, deadline=None)
@given(case=cases())
def test_forward_is_w0x_plus_scaled_bax(case):
    base, layer, x = build(case)
    with_random_b(layer)
    expected, tol = reference_output(base, layer, x, case)
    torch.testing.assert_close(layer(x).double(), expected, **tol)


@settings(max_examples=30, deadline=None)
@given(case=cases())
def test_merged_forward_equals_the_unmerged_forward(case):
    base, layer, x = build(case)
    with_random_b(layer)
    expected, tol = reference_output(base, layer, x, case)
    layer.merge()
    torch.testing.assert_close(layer(x).double(), expected, **tol)


@settings(max_examples=30, deadline=None)
@given(case=cases())
def test_unmerge_restores_w0_up_to_rounding(case):
    base, layer, _ = build(case)
    with_random_b(layer)
    layer.merge()
    layer.unmerge()  # W0 + ΔW - ΔW: exact up to rounding at the scale of |W0| + |ΔW|
    ulp = torch.finfo(torch.float32).eps * (base.weight.abs() + layer.delta_weight().abs()).max()
    torch.testing.assert_close(layer.weight, base.weight, atol=4 * ulp.item(), rtol=0)


# --- merge and unmerge on MiniLM ------------------------------------------------------------

@pytest.fixture
def adapted(minilm_model, minilm_inputs, logits, randomize_b):
    """(MiniLM with LoRA on W_q, W_v and random B, its weights W0 by layer, its unmerged logits)."""
    apply_lora(minilm_model, ("query", "value"), r=8, alpha=16, seed=0)
    randomize_b(minilm_model)
    w0 = {n: layer.weight.clone() for n, layer in lora_layers(minilm_model).items()}
    return minilm_model, w0, logits(minilm_model, minilm_inputs)


def test_merged_minilm_gives_the_unmerged_logits(adapted, minilm_inputs, logits, minilm_read_only):
    model, _, unmerged = adapted
    assert not torch.allclose(unmerged, logits(minilm_read_only[0], minilm_inputs), atol=1e-3)  # B matters
    for layer in lora_layers(model).values():
        layer.merge()
    torch.testing.assert_close(logits(model, minilm_inputs), unmerged, atol=1e-5, rtol=0)


def test_merge_twice_is_a_noop(adapted):
    model, _, _ = adapted
    for layer in lora_layers(model).values():
        layer.merge()
    merged_w = {n: layer.weight.clone() for n, layer in lora_layers(model).items()}
    for layer in lora_layers(model).values():
        layer.merge()  # idempotent
        assert layer.merged
    assert all(torch.equal(merged_w[n], layer.weight) for n, layer in lora_layers(model).items())


def test_unmerge_twice_leaves_the_layer_unmerged(adapted):
    model, _, _ = adapted
    for layer in lora_layers(model).values():
        layer.merge()
        layer.unmerge()
        layer.unmerge()  # idempotent
        assert not layer.merged


def test_unmerge_restores_the_pretrained_weights(adapted):
    model, w0, _ = adapted
    for layer in lora_layers(model).values():
        layer.merge()
        layer.unmerge()
    for n, layer in lora_layers(model).items():
        torch.testing.assert_close(layer.weight, w0[n], atol=1e-6, rtol=0)


def test_merge_then_unmerge_gives_the_unmerged_logits(adapted, minilm_inputs, logits):
    model, _, unmerged = adapted
    for layer in lora_layers(model).values():
        layer.merge()
        layer.unmerge()
    torch.testing.assert_close(logits(model, minilm_inputs), unmerged, atol=1e-5, rtol=0)


def test_merge_refuses_non_finite_delta():
    layer = LoRALinear(nn.Linear(4, 4), r=2)
    w = layer.weight.clone()
    with torch.no_grad():
        layer.lora_B.fill_(float("nan"))
    with pytest.raises(ValueError, match="non-finite"):
        layer.merge()
    assert not layer.merged and torch.equal(layer.weight, w)


# --- initialisation, gradients, dropout ------------------------------------------------------

def test_gaussian_init_draws_a_with_std_one_over_r():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(512, 512), r=4, init="gaussian")
    assert layer.lora_A.std().item() == pytest.approx(1 / 4, rel=0.05)


def test_gaussian_init_starts_b_at_zero():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(512, 512), r=4, init="gaussian")
    assert torch.count_nonzero(layer.lora_B) == 0


def test_base_is_frozen_and_gets_no_gradient():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(8, 6), r=2)
    layer(torch.randn(4, 8)).sum().backward()
    assert layer.weight.grad is None and layer.bias.grad is None


def test_a_and_b_get_gradients():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(8, 6), r=2)
    layer(torch.randn(4, 8)).sum().backward()
    assert layer.lora_B.grad is not None and layer.lora_A.grad is not None


def dropout_layer():
    torch.manual_seed(0)
    base = nn.Linear(16, 12)
    layer = LoRALinear(copy.deepcopy(base), r=4, alpha=4, dropout=0.5).train()
    return base, layer, torch.randn(10, 16)


def test_dropout_cannot_change_the_output_while_b_is_zero():
    base, layer, x = dropout_layer()
    assert torch.equal(layer(x), base(x))  # B = 0: dropout cannot change the output


def test_dropout_masks_the_adapter_input_only():
    base, layer, x = dropout_layer()
    with_random_b(layer)
    torch.manual_seed(123)
    out = layer(x)
    torch.manual_seed(123)
    dropped = F.dropout(x, 0.5, training=True)  # the same mask
    torch.testing.assert_close(out, base(x) + dropped @ layer.lora_A.T @ layer.lora_B.T)
    assert not torch.allclose(out, base(x) + x @ layer.lora_A.T @ layer.lora_B.T)


def test_no_dropout_in_eval_mode():
    base, layer, x = dropout_layer()
    with_random_b(layer)
    layer.eval()  # no dropout at inference
    torch.testing.assert_close(layer(x), base(x) + x @ layer.lora_A.T @ layer.lora_B.T)


# --- agreement with peft's layer --------------------------------------------------------------

def peft_pair(d_in, d_out, r, alpha, rslora):
    """(our LoRALinear, peft's lora.Linear) around the same base, with the same random A and B."""
    peft = pytest.importorskip("peft", reason="peft is the reference LoRA implementation")
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
    return mine, ref


@settings(max_examples=15, deadline=None)
@given(d_in=st.integers(2, 40), d_out=st.integers(2, 40), data=st.data(), alpha=st.integers(1, 32),
       rslora=st.booleans())
def test_layer_output_equals_peft_layer_output(d_in, d_out, data, alpha, rslora):
    mine, ref = peft_pair(d_in, d_out, data.draw(st.integers(1, min(d_in, d_out))), alpha, rslora)
    x = torch.randn(7, d_in)
    torch.testing.assert_close(mine(x), ref(x), atol=1e-5, rtol=1e-5)


@settings(max_examples=15, deadline=None)
@given(d_in=st.integers(2, 40), d_out=st.integers(2, 40), data=st.data(), alpha=st.integers(1, 32),
       rslora=st.booleans())
def test_delta_weight_equals_peft_delta_weight(d_in, d_out, data, alpha, rslora):
    mine, ref = peft_pair(d_in, d_out, data.draw(st.integers(1, min(d_in, d_out))), alpha, rslora)
    torch.testing.assert_close(mine.delta_weight(), ref.get_delta_weight("default"), atol=1e-6, rtol=1e-6)


# --- bad arguments ----------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(r=0), "r must be"), (dict(r=-3), "r must be"),
    (dict(r=9), r"r must be an int in \[1, 8\] \(min\(d_in, d_out\)"),
    (dict(r=2.0), "r must be"), (dict(alpha=float("nan")), "alpha must be a finite"),
    (dict(alpha=float("inf")), "alpha must be a finite"), (dict(dropout=1.0), "dropout must be"),
    (dict(dropout=-0.1), "dropout must be"), (dict(init="xavier"), "init must be one of"),
])
def test_lora_linear_rejects_a_bad_argument_naming_it(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoRALinear(nn.Linear(8, 16), **kwargs)


def test_lora_linear_rejects_a_base_that_is_not_linear():
    with pytest.raises(TypeError, match="base must be a torch.nn.Linear"):
        LoRALinear(nn.Conv1d(2, 2, 1))


def test_lora_scaling_rejects_non_finite_alpha():
    with pytest.raises(ValueError, match="alpha must be a finite"):
        lora_scaling(float("nan"), 4)
