"""minilora.adalora.allocator: with identical weights and gradients, the masks equal peft's."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from minilora.adalora import RankAllocator, apply_adalora, svd_layers

TARGETS = ["query", "key", "value", "dense"]


def twin_models(tiny_bert, init_r=4, **schedule):
    """(our model, peft's model, our SVD layers, peft's layers by the same names), same A, E, B."""
    peft = pytest.importorskip("peft", reason="peft is the reference AdaLoRA")
    model = tiny_bert()
    ours = copy.deepcopy(model)
    config = peft.AdaLoraConfig(target_modules=TARGETS, init_r=init_r, **schedule)
    theirs = peft.get_peft_model(model, config)
    apply_adalora(ours, TARGETS, init_r=init_r, extra=None)
    peft_layers = {n: m for n, m in theirs.base_model.model.named_modules() if hasattr(m, "lora_E")}
    layers = svd_layers(ours)
    assert sorted(peft_layers) == sorted(layers)
    with torch.no_grad():
        for name, layer in layers.items():
            for k in ("lora_A", "lora_E", "lora_B"):
                getattr(layer, k).copy_(getattr(peft_layers[name], k)["default"])
    return ours, theirs, layers, peft_layers


def feed_same_gradients(layers, peft_layers, gen, lr=0.05):
    """Random gradients, identical in both models, and the same SGD step (so λ moves off 0)."""
    with torch.no_grad():
        for name, layer in layers.items():
            for k in ("lora_A", "lora_E", "lora_B"):
                p, q = getattr(layer, k), getattr(peft_layers[name], k)["default"]
                g = torch.randn(p.shape, generator=gen)
                p.sub_(lr * g)
                q.sub_(lr * g)
                p.grad, q.grad = g.clone(), g.clone()


@pytest.mark.parametrize(
    "schedule",
    [
        dict(target_r=2, tinit=2, tfinal=3, total_step=14, deltaT=1),
        dict(target_r=1, tinit=0, tfinal=2, total_step=12, deltaT=3),
        dict(target_r=3, tinit=4, tfinal=0, total_step=10, deltaT=2),
    ],
)
def test_masks_equal_peft_at_every_step(tiny_bert, schedule):
    ours, theirs, layers, peft_layers = twin_models(tiny_bert, **schedule)
    alloc = RankAllocator(
        ours,
        target_r=schedule["target_r"],
        tinit=schedule["tinit"],
        tfinal=schedule["tfinal"],
        total_step=schedule["total_step"],
        delta_t=schedule["deltaT"],
    )
    gen = torch.Generator().manual_seed(0)
    config = theirs.peft_config["default"]
    masked_steps = 0
    for step in range(1, schedule["total_step"] + 1):
        feed_same_gradients(layers, peft_layers, gen)
        budget, pattern = alloc.update_and_allocate(ours, step)
        theirs.base_model.update_and_allocate(step)
        for name, layer in layers.items():
            assert torch.equal(layer.lora_E, peft_layers[name].lora_E["default"]), (step, name)
        if config.rank_pattern:
            masked_steps += 1
            assert pattern == {k.removesuffix(".default"): v for k, v in config.rank_pattern.items()}, step
    assert masked_steps > 0 and sum(map(sum, pattern.values())) == budget == schedule["target_r"] * len(
        layers
    )


def test_parameters_without_gradients_are_skipped(tiny_bert):
    model = tiny_bert()
    apply_adalora(model, ["query", "value"], init_r=4, extra=None)
    alloc = RankAllocator(model, target_r=2, tinit=0, tfinal=0, total_step=4)
    layers = svd_layers(model)
    first = next(iter(layers.values()))
    first.lora_A.grad = torch.ones_like(first.lora_A)  # every other parameter has .grad None
    alloc.update_and_allocate(model, 1)
    # only the layer with a gradient has scores > 0, so only its triplets survive the cut
    assert len(alloc.state) == 1 and alloc.kept_ranks() == {
        n: 4 if n == next(iter(layers)) else 0 for n in layers
    }


def test_a_step_without_masking_leaves_the_singular_values_alone(tiny_bert):
    model = tiny_bert()
    apply_adalora(model, ["query"], init_r=4, extra=None)
    alloc = RankAllocator(model, target_r=2, tinit=5, tfinal=0, total_step=20)
    layers = svd_layers(model)
    for layer in layers.values():
        with torch.no_grad():
            layer.lora_E.normal_()
        layer.lora_E.grad = torch.ones_like(layer.lora_E)
    before = {n: l.lora_E.clone() for n, l in layers.items()}
    budget, pattern = alloc.update_and_allocate(model, 3)
    assert budget == 8 and all(all(v) for v in pattern.values())
    assert all(torch.equal(l.lora_E, before[n]) for n, l in layers.items())


def test_final_pattern_is_reapplied_after_the_budgeting_phase(tiny_bert):
    model = tiny_bert()
    apply_adalora(model, ["query"], init_r=4, extra=None)
    alloc = RankAllocator(model, target_r=1, tinit=0, tfinal=2, total_step=6)
    layers = svd_layers(model)
    gen = torch.Generator().manual_seed(0)
    for step in range(1, 5):
        for layer in layers.values():
            for p in (layer.lora_A, layer.lora_E, layer.lora_B):
                p.grad = torch.randn(p.shape, generator=gen)
                with torch.no_grad():
                    p.sub_(0.1 * p.grad)
        alloc.update_and_allocate(model, step)
    with torch.no_grad():
        for layer in layers.values():
            layer.lora_E.fill_(1.0)  # an optimizer step reviving pruned λ
    alloc.update_and_allocate(model, 5)
    kept = {n: (l.lora_E.view(-1) != 0).tolist() for n, l in layers.items()}
    assert kept == {k.removesuffix(".lora_E"): v for k, v in alloc.rank_pattern.items()}
    assert sum(map(sum, kept.values())) == 2


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(total_step=None), "total_step"),
        (dict(tinit=8, tfinal=2), "tinit"),
        (dict(target_r=5), "target_r"),
        (dict(beta1=1.0), "beta1"),
        (dict(beta2=0.0), "beta2"),
        (dict(score="random"), "score"),
    ],
)
def test_bad_configurations_raise_naming_the_parameter(tiny_bert, kwargs, name):
    model = tiny_bert()
    apply_adalora(model, ["query"], init_r=4, extra=None)
    args = dict(target_r=2, tinit=0, tfinal=0, total_step=10) | kwargs
    with pytest.raises(ValueError, match=name):
        RankAllocator(model, **args)


def test_model_without_adalora_layers_is_refused():
    with pytest.raises(ValueError, match="apply_adalora"):
        RankAllocator(nn.Linear(4, 4), target_r=1, total_step=10)
