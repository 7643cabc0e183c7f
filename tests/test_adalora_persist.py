"""minilora.adalora.persist: AdaLoRA adapters in peft's folder format, read by either library."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch

from minilora import load_adapter, save_adapter
from minilora.adalora import RankAllocator, apply_adalora, svd_layers

TARGETS = ("query", "value")


def needs_peft():
    return pytest.importorskip("peft", reason="peft is the reference AdaLoRA")


def prune_with_random_gradients(model, alloc, steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    for step in range(1, steps + 1):
        with torch.no_grad():
            for layer in svd_layers(model).values():
                for p in (layer.lora_A, layer.lora_E, layer.lora_B):
                    p.grad = torch.randn(p.shape, generator=gen)
                    p.sub_(0.05 * p.grad)
        alloc.update_and_allocate(model, step)


@pytest.fixture
def saved(minilm_model, minilm_inputs, logits, tmp_path):
    """MiniLM with AdaLoRA on W_q, W_v (init_r 6), pruned to 3 ranks per layer on average, saved."""
    fresh = copy.deepcopy(minilm_model)
    apply_adalora(minilm_model, TARGETS, init_r=6, alpha=12, seed=0)
    alloc = RankAllocator(minilm_model, target_r=3, tinit=1, tfinal=1, total_step=6)
    prune_with_random_gradients(minilm_model, alloc, 5)
    with torch.no_grad():
        minilm_model.classifier.weight.normal_()
    expected = logits(minilm_model, minilm_inputs)
    save_adapter(minilm_model, tmp_path / "mine")
    return SimpleNamespace(
        model=minilm_model, fresh=fresh, expected=expected, path=tmp_path / "mine", alloc=alloc
    )


def test_saved_config_has_peft_rank_pattern_and_sliced_tensors(saved):
    config = json.loads((saved.path / "adapter_config.json").read_text())
    assert config["peft_type"] == "ADALORA" and config["init_r"] == 6
    assert config["rank_pattern"] == saved.alloc.rank_pattern
    from safetensors.torch import load_file

    tensors = load_file(str(saved.path / "adapter_model.safetensors"))
    key = "base_model.model.bert.encoder.layer.0.attention.self.query"
    kept = sum(config["rank_pattern"]["bert.encoder.layer.0.attention.self.query.lora_E"])
    assert tensors[f"{key}.lora_A"].shape == (kept, 384) and tensors[f"{key}.lora_B"].shape == (384, kept)


def test_peft_loads_a_minilora_adalora_adapter_with_the_same_logits(saved, minilm_inputs, logits):
    peft = needs_peft()
    in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(saved.fresh), str(saved.path))
    torch.testing.assert_close(logits(in_peft, minilm_inputs), saved.expected, atol=1e-5, rtol=1e-5)


def test_minilora_loads_its_own_adapter_at_the_kept_ranks(saved, minilm_inputs, logits):
    again = copy.deepcopy(saved.fresh)
    load_adapter(again, saved.path)
    torch.testing.assert_close(logits(again, minilm_inputs), saved.expected, atol=1e-6, rtol=0)
    assert {n: l.r for n, l in svd_layers(again).items()} == saved.alloc.kept_ranks()
    assert all(layer.ranknum == 6 for layer in svd_layers(again).values())


def test_minilora_loads_a_peft_adalora_adapter_with_the_same_logits(
    minilm_model, minilm_inputs, logits, tmp_path
):
    peft = needs_peft()
    fresh = copy.deepcopy(minilm_model)
    config = peft.AdaLoraConfig(
        target_modules=list(TARGETS),
        init_r=6,
        target_r=2,
        tinit=1,
        tfinal=1,
        total_step=6,
        task_type="SEQ_CLS",
    )
    theirs = peft.get_peft_model(minilm_model, config)
    gen = torch.Generator().manual_seed(1)
    for step in range(1, 6):
        with torch.no_grad():
            for n, p in theirs.named_parameters():
                if "lora_" in n:
                    p.grad = torch.randn(p.shape, generator=gen)
                    p.sub_(0.05 * p.grad)
        theirs.base_model.update_and_allocate(step)
    expected = logits(theirs, minilm_inputs)
    theirs.save_pretrained(str(tmp_path / "peft"))
    names = load_adapter(fresh, tmp_path / "peft")
    assert len(names) == 12
    torch.testing.assert_close(logits(fresh, minilm_inputs), expected, atol=1e-5, rtol=1e-5)


def test_a_mismatched_adapter_is_refused_and_the_model_is_left_alone(saved, tiny_bert):
    small = tiny_bert()
    before = {k: v.clone() for k, v in small.state_dict().items()}
    with pytest.raises(ValueError, match="does not fit"):
        load_adapter(small, saved.path)
    assert all(torch.equal(v, before[k]) for k, v in small.state_dict().items())


def test_a_config_with_a_bad_rank_pattern_is_refused(saved):
    file = saved.path / "adapter_config.json"
    config = json.loads(file.read_text())
    config["rank_pattern"] = {"bert.encoder.layer.0.attention.self.query.lora_E": [True]}
    file.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="rank_pattern"):
        load_adapter(copy.deepcopy(saved.fresh), saved.path)
