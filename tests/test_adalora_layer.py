"""minilora.adalora.layer: SVDLinear equals peft's SVDLinear; apply_adalora wraps and freezes."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from minilora.adalora import SVDLinear, apply_adalora, svd_layers


def peft_svd(base, r, alpha):
    adalora = pytest.importorskip("peft.tuners.adalora", reason="peft is the reference AdaLoRA")
    from peft import AdaLoraConfig

    config = AdaLoraConfig(init_r=r, lora_alpha=alpha, total_step=10)
    return adalora.SVDLinear(copy.deepcopy(base), "default", config=config, r=r, lora_alpha=alpha)


def random_layer(r=6, alpha=16.0, seed=0):
    torch.manual_seed(seed)
    layer = SVDLinear(nn.Linear(20, 12), r=r, alpha=alpha)
    with torch.no_grad():
        layer.lora_E.normal_()
    return layer


def test_forward_equals_peft_svdlinear_with_the_same_triplets():
    ours = random_layer()
    theirs = peft_svd(ours.base_layer, 6, 16)
    with torch.no_grad():
        for k in ("lora_A", "lora_E", "lora_B"):
            getattr(theirs, k)["default"].copy_(getattr(ours, k))
    x = torch.randn(4, 7, 20)
    # peft divides by ranknum + 1e-5: a relative difference of ~1e-6 on the update
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-6, rtol=1e-5)


def test_initial_adapter_is_a_no_op_with_gaussian_singular_vectors():
    torch.manual_seed(0)
    base = nn.Linear(64, 48)
    layer = SVDLinear(copy.deepcopy(base), r=12)
    x = torch.randn(3, 64)
    assert torch.equal(layer(x), base(x))
    assert torch.count_nonzero(layer.lora_E) == 0 and layer.lora_A.std().item() == pytest.approx(
        0.02, rel=0.1
    )


def test_scale_uses_the_initial_rank_even_when_triplets_are_pruned():
    layer = random_layer(r=6, alpha=12)
    with torch.no_grad():
        layer.lora_E[3:] = 0
    assert layer.scaling == 2.0
    expected = layer.lora_B[:, :3] @ (layer.lora_A[:3] * layer.lora_E[:3]) * 2.0
    torch.testing.assert_close(layer.delta_weight(), expected)


def test_merge_then_unmerge_restores_the_weight_and_keeps_outputs():
    layer = random_layer()
    w0 = layer.base_layer.weight.detach().clone()
    x = torch.randn(5, 20)
    before = layer(x)
    layer.merge()
    torch.testing.assert_close(layer(x), before, atol=1e-6, rtol=1e-5)
    layer.unmerge()
    torch.testing.assert_close(layer.base_layer.weight, w0, atol=1e-7, rtol=0)


def test_apply_adalora_wraps_targets_and_trains_only_adapters_and_head(tiny_bert):
    model = tiny_bert()
    names = apply_adalora(model, ("query", "value"), init_r=4, alpha=8)
    assert names == [
        f"bert.encoder.layer.{i}.attention.self.{m}" for i in range(2) for m in ("query", "value")
    ]
    trainable = {
        n.rsplit(".", 1)[-1] for n, p in model.named_parameters() if p.requires_grad and "classifier" not in n
    }
    assert trainable == {"lora_A", "lora_E", "lora_B"}
    assert all(p.requires_grad for p in model.classifier.parameters())


def test_apply_adalora_refuses_a_rank_above_the_layer_naming_init_r(tiny_bert):
    with pytest.raises(ValueError, match="init_r"):
        apply_adalora(tiny_bert(), ("query",), init_r=17)


def test_apply_adalora_twice_is_refused(tiny_bert):
    model = tiny_bert()
    apply_adalora(model, ("query",), init_r=2)
    with pytest.raises(ValueError, match="already"):
        apply_adalora(model, ("query",), init_r=2)


def test_seeded_apply_adalora_is_reproducible(tiny_bert):
    a, b = tiny_bert(), tiny_bert()
    apply_adalora(a, ("query",), init_r=3, seed=5)
    apply_adalora(b, ("query",), init_r=3, seed=5)
    la, lb = svd_layers(a), svd_layers(b)
    assert all(torch.equal(la[n].lora_A, lb[n].lora_A) for n in la)


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(r=0), "r"),
        (dict(r=4, alpha=0), "alpha"),
        (dict(r=4, dropout=1.0), "dropout"),
        (dict(r=2, ranknum=1), "ranknum"),
    ],
)
def test_bad_layer_arguments_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SVDLinear(nn.Linear(8, 8), **kwargs)
