"""minilora.lora.peft_format: adapters saved and loaded in peft's folder format, in both directions."""

from __future__ import annotations

import copy
import os
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from minilora.lora import apply_lora, load_adapter, lora_layers, read_adapter, save_adapter

ADAPTER_FILES = ["adapter_config.json", "adapter_model.safetensors"]


def needs_peft():
    return pytest.importorskip("peft", reason="peft is the reference LoRA implementation")


@pytest.fixture
def saved(minilm_model, minilm_inputs, logits, randomize_b, tmp_path):
    """MiniLM with LoRA (W_q, W_v, r = 8, α = 16), random B and a trained head, saved to
    ``tmp_path / "mine"``; ``fresh`` is the model before LoRA, ``expected`` the adapted logits."""
    fresh = copy.deepcopy(minilm_model)
    apply_lora(minilm_model, ("query", "value"), r=8, alpha=16, seed=0)
    randomize_b(minilm_model)
    with torch.no_grad():
        minilm_model.classifier.weight.normal_()  # the trained head travels with the adapter
    expected = logits(minilm_model, minilm_inputs)
    save_adapter(minilm_model, tmp_path / "mine")
    return SimpleNamespace(model=minilm_model, fresh=fresh, expected=expected, path=tmp_path / "mine")


# --- minilora -> files -> peft / minilora -------------------------------------------------------

def test_save_adapter_writes_peft_config_and_safetensors(saved):
    assert sorted(os.listdir(saved.path)) == ADAPTER_FILES


def test_saved_config_records_rank_alpha_and_the_head(saved):
    config, _ = read_adapter(saved.path)
    assert config["modules_to_save"] == ["classifier"] and config["r"] == 8 and config["lora_alpha"] == 16


def test_saved_tensors_use_peft_key_names(saved):
    _, tensors = read_adapter(saved.path)
    assert "bert.encoder.layer.0.attention.self.query.lora_A.weight" in tensors


def test_peft_loads_a_minilora_adapter(saved, minilm_inputs, logits):
    peft = needs_peft()
    in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(saved.fresh), str(saved.path))
    torch.testing.assert_close(logits(in_peft, minilm_inputs), saved.expected, atol=1e-6, rtol=0)


def test_load_adapter_creates_the_layers_in_a_plain_model(saved):
    again = copy.deepcopy(saved.fresh)
    assert len(load_adapter(again, saved.path)) == 12


def test_load_adapter_into_a_plain_model_reproduces_the_logits(saved, minilm_inputs, logits):
    again = copy.deepcopy(saved.fresh)
    load_adapter(again, saved.path)
    assert torch.equal(logits(again, minilm_inputs), saved.expected)


def test_minilora_loads_a_peft_adapter(saved, minilm_inputs, logits, tmp_path):
    peft = needs_peft()
    in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(saved.fresh), str(saved.path))
    in_peft.save_pretrained(str(tmp_path / "peft"))
    back = copy.deepcopy(saved.fresh)
    load_adapter(back, tmp_path / "peft")
    torch.testing.assert_close(logits(back, minilm_inputs), saved.expected, atol=1e-6, rtol=0)


# --- mixed ranks, rsLoRA ----------------------------------------------------------------------------

@pytest.fixture
def mixed(minilm_model, randomize_b, tmp_path):
    """MiniLM with rsLoRA at r = 8 on W_q, W_v and r = 2 on W_k, saved without the head."""
    fresh = copy.deepcopy(minilm_model)
    apply_lora(minilm_model, ("query", "value"), r=8, alpha=16, rslora=True, seed=0)
    apply_lora(minilm_model, ("key",), r=2, alpha=4, rslora=True, seed=1)
    randomize_b(minilm_model)
    save_adapter(minilm_model, tmp_path / "a", extra=())
    return SimpleNamespace(model=minilm_model, fresh=fresh, path=tmp_path / "a")


def test_mixed_ranks_are_saved_as_a_rank_pattern_without_a_head(mixed):
    config, _ = read_adapter(mixed.path)
    assert config["modules_to_save"] is None and set(config["rank_pattern"].values()) == {2}


def test_peft_reproduces_mixed_ranks_and_rslora(mixed, minilm_inputs, logits):
    peft = needs_peft()
    in_peft = peft.PeftModel.from_pretrained(copy.deepcopy(mixed.fresh), str(mixed.path))
    torch.testing.assert_close(logits(in_peft, minilm_inputs), logits(mixed.model, minilm_inputs),
                               atol=1e-6, rtol=0)


# --- loading into a merged model ----------------------------------------------------------------

def test_load_adapter_into_a_merged_model_swaps_the_adapter(minilm_model, minilm_inputs, logits, randomize_b,
                                                             tmp_path):
    apply_lora(minilm_model, ("query", "value"), r=4, alpha=8, seed=0)
    randomize_b(minilm_model, seed=1)
    first = logits(minilm_model, minilm_inputs)
    save_adapter(minilm_model, tmp_path / "one")
    randomize_b(minilm_model, seed=2)
    second = logits(minilm_model, minilm_inputs)
    for layer in lora_layers(minilm_model).values():
        layer.merge()
    load_adapter(minilm_model, tmp_path / "one")
    assert all(layer.merged for layer in lora_layers(minilm_model).values())
    torch.testing.assert_close(logits(minilm_model, minilm_inputs), first, atol=1e-5, rtol=0)
    assert not torch.allclose(first, second)


# --- adapters that do not fit ---------------------------------------------------------------------

@pytest.fixture
def qv8(minilm_model, tmp_path):
    """An adapter folder: LoRA r = 8 on MiniLM's W_q, W_v."""
    src = copy.deepcopy(minilm_model)
    apply_lora(src, ("query", "value"), r=8)
    save_adapter(src, tmp_path / "qv8")
    return tmp_path / "qv8"


def test_load_adapter_names_the_key_whose_shape_differs(minilm_model, qv8):
    apply_lora(minilm_model, ("query", "value"), r=4)
    msg = r"layer\.0\.attention\.self\.query\.lora_A\.weight: shape \(8, 384\)"
    with pytest.raises(ValueError, match=msg):
        load_adapter(minilm_model, qv8)


def test_load_adapter_names_a_layer_the_adapter_lacks(minilm_model, qv8):
    apply_lora(minilm_model, ("key",), r=8)
    msg = r"attention\.self\.key\.lora_A\.weight: the model has this LoRA layer"
    with pytest.raises(ValueError, match=msg):
        load_adapter(minilm_model, qv8)


def test_rejected_load_adapter_changes_nothing(minilm_model, qv8):
    apply_lora(minilm_model, ("key",), r=8)
    a_before = lora_layers(minilm_model)["bert.encoder.layer.0.attention.self.key"].lora_A.clone()
    with pytest.raises(ValueError, match="the model has this LoRA layer"):
        load_adapter(minilm_model, qv8)
    assert torch.equal(lora_layers(minilm_model)["bert.encoder.layer.0.attention.self.key"].lora_A, a_before)
    assert "bert.encoder.layer.0.attention.self.query" not in lora_layers(minilm_model)  # nothing changed


def test_load_adapter_rejects_a_model_without_the_modules(qv8):
    other = nn.Sequential(nn.Linear(384, 384))
    with pytest.raises(ValueError, match="the model has no module bert.encoder"):
        load_adapter(other, qv8)


def test_load_adapter_needs_an_adapter_folder(minilm_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        load_adapter(minilm_model, tmp_path / "nowhere")


# --- saving -----------------------------------------------------------------------------------------

def test_save_adapter_overwrites_a_folder_in_place(minilm_model, tmp_path):
    apply_lora(minilm_model, ("value",), r=2)
    save_adapter(minilm_model, tmp_path / "ad")
    save_adapter(minilm_model, tmp_path / "ad")  # overwrite in place
    assert sorted(os.listdir(tmp_path / "ad")) == ADAPTER_FILES


def test_save_adapter_rejects_a_file_path(minilm_model, tmp_path):
    apply_lora(minilm_model, ("value",), r=2)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="path must be a folder"):
        save_adapter(minilm_model, tmp_path / "file")


def test_save_adapter_rejects_a_model_without_lora(tmp_path):
    with pytest.raises(ValueError, match="no LoRALinear"):
        save_adapter(nn.Linear(2, 2), tmp_path / "x")
