"""minilora.lora.bottleneck: Houlsby's adapter layers (what LoRA's no-latency claim is measured against)."""

import pytest
import torch
from torch import nn

from minilora.lora import (
    BottleneckAdapter,
    apply_bottleneck,
    bottleneck_layers,
    mark_only_bottleneck_trainable,
)


def test_a_new_adapter_leaves_the_outputs_unchanged(tiny_bert, tiny_data):
    base = tiny_bert()
    model = tiny_bert()
    apply_bottleneck(model, size=4, seed=0)
    batch = tiny_data(8).batch(torch.arange(8))
    batch.pop("labels")
    assert torch.equal(model(**batch).logits, base(**batch).logits)  # W_up = 0: y + 0


def test_houlsby_places_two_adapters_per_block(tiny_bert):
    model = tiny_bert(layers=2)
    names = apply_bottleneck(model, size=4)
    places = ("attention.output", "output")
    assert names == [f"bert.encoder.layer.{i}.{p}.dense" for i in range(2) for p in places]


def test_the_adapter_computes_y_plus_up_gelu_down_y():
    torch.manual_seed(0)
    layer = BottleneckAdapter(nn.Linear(6, 5), size=3)
    nn.init.normal_(layer.adapter_up.weight)
    x = torch.randn(4, 6)
    y = layer.base_layer(x)
    expected = y + layer.adapter_up(nn.functional.gelu(layer.adapter_down(y)))
    torch.testing.assert_close(layer(x), expected)


def test_only_the_adapters_and_the_head_train(tiny_bert):
    model = tiny_bert(layers=2)
    apply_bottleneck(model, size=4)
    n = mark_only_bottleneck_trainable(model)
    d, m = 16, 4
    assert n == 4 * (2 * d * m + m + d) + (16 * 2 + 2)  # 4 adapters + the classifier
    trainable = {k for k, p in model.named_parameters() if p.requires_grad}
    assert all(".adapter_" in k or k.startswith("classifier.") for k in trainable)


def test_a_training_step_moves_the_up_projection(tiny_bert, tiny_data):
    model = tiny_bert()
    apply_bottleneck(model, size=4, seed=0)
    mark_only_bottleneck_trainable(model)
    model.train()
    loss = model(**tiny_data(8).batch(torch.arange(8))).loss
    loss.backward()
    ups = [layer.adapter_up.weight.grad for layer in bottleneck_layers(model).values()]
    assert all(g is not None and g.abs().sum() > 0 for g in ups)


@pytest.mark.parametrize("size", [0, 17, 2.5])
def test_apply_bottleneck_rejects_a_size_outside_1_to_d(tiny_bert, size):
    with pytest.raises((ValueError, TypeError), match="size"):
        apply_bottleneck(tiny_bert(), size=size)


def test_mark_only_bottleneck_trainable_needs_adapters(tiny_bert):
    with pytest.raises(ValueError, match="apply_bottleneck"):
        mark_only_bottleneck_trainable(tiny_bert())
