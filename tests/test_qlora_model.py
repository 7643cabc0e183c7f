"""minilora.qlora.model: a whole MiniLM quantised by minilora vs by bitsandbytes (+ peft LoRA with
the same A, B); peft QLoRA adapters in and out; the memory report; training through the 4-bit
base with gradient checkpointing (minilora.train's ``checkpointing=True``).
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from minilora.data import encode_sample
from minilora.lora import apply_lora, load_adapter, lora_layers, mark_only_lora_trainable, save_adapter
from minilora.qlora import Linear4bit, Linear8bit, quantize_model, quantized_layers
from minilora.train import gradient_checkpointing, train

bnb = pytest.importorskip("bitsandbytes", reason="bitsandbytes is the reference for these checks")
peft = pytest.importorskip("peft", reason="peft is the reference LoRA implementation")

TEXTS = ["A gorgeous, moving film.", "Dull and far too long.", "It was fine, I guess, nothing more."]


def bnb_quantize(model: nn.Module) -> nn.Module:
    """Every nn.Linear but the classifier → bitsandbytes' Linear4bit (NF4 + double quant, fp32)."""
    for name, m in list(model.named_modules()):
        if isinstance(m, nn.Linear) and not name.endswith("classifier"):
            layer = bnb.nn.Linear4bit(m.in_features, m.out_features, bias=m.bias is not None,
                                      compute_dtype=torch.float32, compress_statistics=True, quant_type="nf4")
            layer.load_state_dict(m.state_dict())
            # on CPUs with AVX512-BF16 its eval-mode forward repacks the weight for a bf16 kernel
            # (≈1e-2 off); keep its documented path: dequantise, then matmul in compute_dtype
            layer.support_avx512bf16_for_cpu = False
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, layer.to("cpu"))
    return model


def logits(model, tokenizer) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**tokenizer(TEXTS, return_tensors="pt", padding=True)).logits.float()


@pytest.fixture
def pair(minilm):
    """(float model, minilora QLoRA model, bnb + peft QLoRA model, tokenizer): same A, B, non-zero."""
    model, tok = minilm
    ours = copy.deepcopy(model)
    quantize_model(ours)
    apply_lora(ours, ("query", "value"), r=8, alpha=16, seed=0)
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in lora_layers(ours).values():
            layer.lora_B.normal_(0, 0.02)  # B = 0 would hide a wrong B·A
    theirs = bnb_quantize(copy.deepcopy(model))
    config = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["query", "value"],
                             modules_to_save=["classifier"])
    theirs = peft.get_peft_model(theirs, config)
    modules = dict(theirs.named_modules())
    with torch.no_grad():
        for name, layer in lora_layers(ours).items():
            modules[f"base_model.model.{name}"].lora_A["default"].weight.copy_(layer.lora_A)
            modules[f"base_model.model.{name}"].lora_B["default"].weight.copy_(layer.lora_B)
    return model, ours, theirs, tok


def copy_bnb_constants(ours: nn.Module, theirs: nn.Module) -> None:
    """Give minilora's layers bitsandbytes' 8-bit constant codes (the ≈0.2 % that differ)."""
    modules = {n.removeprefix("base_model.model."): m for n, m in theirs.named_modules()}
    for name, layer in quantized_layers(ours).items():
        qs = modules[name.removesuffix(".base_layer")].weight.quant_state
        layer.absmax_codes.copy_(qs.absmax)
        layer.absmax_scale.copy_(qs.state2.absmax)
        layer.absmax_offset.copy_(qs.offset)


def test_same_constants_give_the_same_logits_as_bitsandbytes_and_peft(pair):
    _, ours, theirs, tok = pair
    copy_bnb_constants(ours, theirs)
    # identical weights: only summation order differs (fp32)
    torch.testing.assert_close(logits(ours, tok), logits(theirs, tok), atol=1e-4, rtol=0)


def test_own_constants_differ_from_bitsandbytes_far_less_than_quantisation_itself(pair):
    """With its own (nearest-level) 8-bit constants minilora differs from bitsandbytes by < 10 %
    of what 4-bit quantisation changes in the logits: the bound the differing codes allow."""
    model, ours, theirs, tok = pair
    with_lora = copy.deepcopy(model)
    apply_lora(with_lora, ("query", "value"), r=8, alpha=16)
    for name, layer in lora_layers(with_lora).items():
        src = lora_layers(ours)[name]
        with torch.no_grad():
            layer.lora_A.copy_(src.lora_A)
            layer.lora_B.copy_(src.lora_B)
    full, a, b = logits(with_lora, tok), logits(ours, tok), logits(theirs, tok)
    quantisation = (a - full).abs().max()
    assert quantisation > 0
    assert (a - b).abs().max() < 0.1 * quantisation


def test_a_peft_qlora_adapter_loads_into_minilora_and_back(pair, tmp_path):
    _, ours, theirs, tok = pair
    copy_bnb_constants(ours, theirs)
    with torch.no_grad():  # a trained-looking head too
        theirs.base_model.model.classifier.modules_to_save["default"].weight.normal_(0, 0.1)
    theirs.save_pretrained(tmp_path / "from_peft")
    target = copy.deepcopy(ours)
    for layer in lora_layers(target).values():
        nn.init.zeros_(layer.lora_B)
    load_adapter(target, tmp_path / "from_peft")
    torch.testing.assert_close(logits(target, tok), logits(theirs, tok), atol=1e-4, rtol=0)
    save_adapter(target, tmp_path / "from_minilora")
    base = bnb_quantize(copy.deepcopy(pair[0]))
    back = peft.PeftModel.from_pretrained(base, str(tmp_path / "from_minilora"))
    modules = {n.removeprefix("base_model.model."): m for n, m in back.named_modules()}
    for name, layer in quantized_layers(target).items():  # same constants on the fresh bnb base
        qs = modules[name.removesuffix(".base_layer")].weight.quant_state
        qs.absmax.copy_(layer.absmax_codes)
    torch.testing.assert_close(logits(back, tok), logits(target, tok), atol=1e-4, rtol=0)


def test_memory_report_is_measured_from_the_tensors(minilm):
    model, _ = minilm
    n_linear = sum(m.weight.numel() for n, m in model.named_modules()
                   if isinstance(m, nn.Linear) and not n.endswith("classifier"))
    report = quantize_model(model, compute_dtype=torch.bfloat16)
    assert report.parameters == n_linear and len(report.layers) == 37  # 6 × 6 + the pooler
    assert report.weight_bytes_before == 4 * n_linear
    stored = sum(m.packed.numel() + m.absmax_codes.numel() + 4 * m.absmax_scale.numel() + 4
                 for m in quantized_layers(model).values())
    assert report.weight_bytes_after == stored
    assert abs(report.bits_per_parameter - 4.127) < 0.01
    assert report.model_bytes_before - report.model_bytes_after == report.weight_bytes_before - stored
    assert isinstance(model.classifier, nn.Linear)  # skipped: the new head trains in float


@pytest.mark.parametrize("quant, cls", [("fp4", Linear4bit), ("int4", Linear4bit), ("int8", Linear8bit)])
def test_every_base_type_quantises_every_linear(minilm, quant, cls):
    model, _ = minilm
    report = quantize_model(model, quant=quant, double_quant=False, skip=())
    assert all(isinstance(m, cls) for m in quantized_layers(model).values())
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert report.bits_per_parameter == (8.5 if quant == "int8" else 4.5)


@pytest.mark.parametrize("kwargs, error", [
    (dict(quant="q4"), ValueError), (dict(double_quant="yes"), TypeError),
    (dict(compute_dtype="bf16"), ValueError), (dict(skip=3), TypeError),
    (dict(skip=r".*"), ValueError)])
def test_bad_arguments_are_refused_before_the_model_changes(minilm, kwargs, error):
    model, _ = minilm
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(error):
        quantize_model(model, **kwargs)
    assert all(isinstance(m, nn.Linear) for n, m in model.named_modules() if n.endswith("query"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.slow
def test_training_with_checkpointing_gives_the_same_losses_and_weights(minilm):
    """Gradient checkpointing recomputes each block in backward (dropout masks repeated): the
    same losses and the same trained adapter, through a 4-bit base in bf16 compute."""
    model, tok = minilm
    quantize_model(model, compute_dtype=torch.bfloat16)
    apply_lora(model, ("query", "value"), r=8, seed=0)
    mark_only_lora_trainable(model)
    data = encode_sample("movie", "train", tok, n=24, max_length=32)
    runs = []
    for checkpointing in (False, True):
        m = copy.deepcopy(model)
        history = train(m, data, steps=3, batch_size=8, lr=1e-3, checkpointing=checkpointing, progress=False)
        trained = {n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad}
        runs.append((history.loss, trained))
        assert all("forward" not in vars(b) for b in m.bert.encoder.layer)  # the class's forward again
    (loss_a, params_a), (loss_b, params_b) = runs
    assert loss_a == pytest.approx(loss_b, rel=1e-5, abs=1e-6)
    for name in params_a:
        torch.testing.assert_close(params_a[name], params_b[name], atol=1e-6, rtol=1e-5)


def test_checkpointing_needs_a_model_with_blocks():
    with pytest.raises(ValueError, match="ModuleList"):
        with gradient_checkpointing(nn.Sequential(nn.Linear(4, 2))):
            pass
