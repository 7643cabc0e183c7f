import socket

import pytest
import torch
from safetensors.torch import load_file

from minilora.models import default_model_path, load_model, pick_device


def test_every_pretrained_tensor_is_the_packaged_one(minilm):
    model, _ = minilm
    shipped = load_file(str(default_model_path() / "model.safetensors"))
    ours = model.state_dict()
    compared = 0
    for key, tensor in shipped.items():
        if key == "embeddings.position_ids":  # a buffer, not a weight
            continue
        assert torch.equal(ours["bert." + key], tensor), key
        compared += 1
    assert compared == 103
    assert sum(t.numel() for k, t in shipped.items() if k != "embeddings.position_ids") == 22_713_216
    extra = {k for k in ours if not k.startswith("bert.")}
    assert extra == {"classifier.weight", "classifier.bias"}


def test_classifier_is_fresh_but_seeded():
    a, _ = load_model(seed=0)
    b, _ = load_model(seed=0)
    c, _ = load_model(seed=1)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    assert a.classifier.weight.shape == (2, 384)


def test_tokenizer_round_trip(minilm):
    _, tok = minilm
    text = "The gorgeously elaborate continuation is so huge that a column of words cannot describe it"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.decode(ids, skip_special_tokens=True) == text.lower()


def test_loading_never_touches_the_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    model, tok = load_model(num_labels=3)
    assert model.classifier.out_features == 3
    assert tok("ok")["input_ids"]


def test_hub_id_offline_says_how_to_pass_a_local_path(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="unreachable.*local folder path"):
        load_model("some-org/some-model-that-is-not-here")


def test_local_path_passes_through(tmp_path):
    model, _ = load_model(str(default_model_path()), num_labels=2)
    assert model.config.hidden_size == 384


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_bad_num_labels(bad):
    with pytest.raises(ValueError, match="num_labels"):
        load_model(num_labels=bad)


def test_bad_dtype():
    with pytest.raises(TypeError, match="dtype"):
        load_model(dtype=torch.int8)


def test_pick_device_is_a_device():
    d = pick_device()
    assert isinstance(d, torch.device)
    if not torch.cuda.is_available():
        assert d.type in ("cpu", "mps")
