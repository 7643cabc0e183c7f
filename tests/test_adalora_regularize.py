"""minilora.adalora.regularize: the orthogonality penalty equals the term peft adds to the loss."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from minilora.adalora import apply_adalora, orthogonal_regularization, orthogonality_gap, svd_layers


def test_equals_the_term_peft_adds_to_the_loss(tiny_bert, bert_batch):
    peft = pytest.importorskip("peft", reason="peft is the reference AdaLoRA")
    model = tiny_bert()
    ours = copy.deepcopy(model)
    config = peft.AdaLoraConfig(
        target_modules=["query", "value", "dense"], init_r=4, total_step=10, orth_reg_weight=1.0
    )
    theirs = peft.get_peft_model(model, config)
    apply_adalora(ours, ("query", "value", "dense"), init_r=4, extra=None)
    peft_layers = {n: m for n, m in theirs.base_model.model.named_modules() if hasattr(m, "lora_E")}
    for name, layer in svd_layers(ours).items():
        with torch.no_grad():
            for k in ("lora_A", "lora_E", "lora_B"):
                getattr(layer, k).copy_(getattr(peft_layers[name], k)["default"])
    batch = {k: v.clamp(max=59) for k, v in bert_batch(4, 8).items()}
    with torch.no_grad():
        with_term = theirs.base_model(**batch).loss  # AdaLoraModel.forward adds the term
        task = theirs.base_model.model(**batch).loss
        torch.testing.assert_close(orthogonal_regularization(ours), with_term - task, atol=1e-5, rtol=1e-5)


def test_orthonormal_factors_cost_nothing():
    model = nn.Sequential(nn.Linear(16, 16))
    apply_adalora(model, ("0",), init_r=4, extra=None)
    layer = svd_layers(model)["0"]
    q, _ = torch.linalg.qr(torch.randn(16, 4))
    with torch.no_grad():
        layer.lora_A.copy_(q.T)
        layer.lora_B.copy_(q)
    assert orthogonal_regularization(model).item() == pytest.approx(0.0, abs=1e-5)


def test_gap_is_the_frobenius_distance_to_the_identity():
    m = torch.diag(torch.tensor([2.0, 1.0]))
    assert orthogonality_gap(m, rows=True).item() == pytest.approx(3.0)


def test_penalty_has_gradients_for_both_factors():
    model = nn.Sequential(nn.Linear(8, 8))
    apply_adalora(model, ("0",), init_r=3, extra=None)
    orthogonal_regularization(model).backward()
    layer = svd_layers(model)["0"]
    assert layer.lora_A.grad.abs().sum() > 0 and layer.lora_B.grad.abs().sum() > 0


def test_model_without_adalora_layers_is_refused():
    with pytest.raises(ValueError, match="apply_adalora"):
        orthogonal_regularization(nn.Linear(3, 3))
