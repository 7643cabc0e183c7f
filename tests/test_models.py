"""minilora.models: the packaged MiniLM loaded offline, bit for bit; devices; parameter groups."""

import socket

import pytest
import torch
from safetensors.torch import load_file

from minilora.models import default_model_path, load_model, parameter_groups, pick_device


def shipped_weights():
    """The packaged safetensors file's tensors, without the position-id buffer."""
    shipped = load_file(str(default_model_path() / "model.safetensors"))
    return {k: t for k, t in shipped.items() if k != "embeddings.position_ids"}  # a buffer, not a weight


def test_every_pretrained_tensor_is_the_packaged_one(minilm_read_only):
    ours = minilm_read_only[0].state_dict()
    compared = 0
    for key, tensor in shipped_weights().items():
        assert torch.equal(ours["bert." + key], tensor), key
        compared += 1
    assert compared == 103


def test_the_packaged_model_has_22_7m_pretrained_parameters():
    assert sum(t.numel() for t in shipped_weights().values()) == 22_713_216


def test_only_the_classifier_is_new(minilm_read_only):
    extra = {k for k in minilm_read_only[0].state_dict() if not k.startswith("bert.")}
    assert extra == {"classifier.weight", "classifier.bias"}


def test_classifier_is_fresh_but_seeded():
    a, _ = load_model(seed=0)
    b, _ = load_model(seed=0)
    c, _ = load_model(seed=1)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    assert a.classifier.weight.shape == (2, 384)


TEXT = "The gorgeously elaborate continuation is so huge that a column of words cannot describe it"


def test_tokenizer_wraps_text_in_cls_and_sep(minilm_read_only):
    _, tok = minilm_read_only
    ids = tok(TEXT)["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id


def test_tokenizer_round_trip(minilm_read_only):
    _, tok = minilm_read_only
    assert tok.decode(tok(TEXT)["input_ids"], skip_special_tokens=True) == TEXT.lower()


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
def test_load_model_rejects_num_labels_that_is_not_a_positive_int(bad):
    with pytest.raises(ValueError, match="num_labels"):
        load_model(num_labels=bad)


def test_load_model_rejects_a_dtype_that_is_not_floating():
    with pytest.raises(TypeError, match="dtype"):
        load_model(dtype=torch.int8)


def test_pick_device_is_a_device():
    d = pick_device()
    assert isinstance(d, torch.device)
    if not torch.cuda.is_available():
        assert d.type in ("cpu", "mps")


# --- parameter_groups -----------------------------------------------------------------------------

def test_parameter_groups_cover_every_parameter(minilm_read_only):
    groups = parameter_groups(minilm_read_only[0])
    assert sum(groups.values()) == 22_713_986
    assert groups["other"] == 0


def test_parameter_groups_by_hand(minilm_read_only):
    groups = parameter_groups(minilm_read_only[0])
    assert groups["Wq"] == groups["Wk"] == groups["Wv"] == groups["Wo"] == 6 * (384 * 384 + 384)
    assert groups["FFN"] == 6 * (2 * 384 * 1536 + 1536 + 384)
    assert groups["classifier"] == 770 and groups["other"] == 0


def test_parameter_groups_can_count_only_trainable_parameters(minilm):
    model, _ = minilm
    for p in model.parameters():
        p.requires_grad = False
    model.classifier.weight.requires_grad = True
    assert sum(parameter_groups(model, trainable_only=True).values()) == 768


# --- mean pooling (the frozen-encoder baseline's head, as all-MiniLM was trained) ---------------

def test_mean_pool_classifier_averages_the_unmasked_token_vectors(tiny_bert):
    from minilora.models import MeanPoolClassifier

    model = MeanPoolClassifier(tiny_bert())
    ids = torch.tensor([[5, 7, 9, 0], [3, 4, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    hidden = model.bert(input_ids=ids, attention_mask=mask).last_hidden_state
    expected = torch.stack([hidden[0, :3].mean(0), hidden[1, :2].mean(0)])
    torch.testing.assert_close(model.features(ids, mask), expected)
    torch.testing.assert_close(model(ids, mask).logits, model.classifier(expected))


def test_mean_pool_classifier_returns_the_cross_entropy_loss(tiny_bert):
    from minilora.models import MeanPoolClassifier

    model = MeanPoolClassifier(tiny_bert())
    ids, mask, labels = torch.tensor([[5, 7, 9]]), torch.ones(1, 3, dtype=torch.long), torch.tensor([1])
    out = model(ids, mask, labels=labels)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))


def test_load_model_with_mean_pooling_keeps_the_seeded_head_and_encoder(minilm_read_only):
    model, _ = load_model(pooling="mean")
    reference = minilm_read_only[0]
    assert torch.equal(model.classifier.weight, reference.classifier.weight)
    words = model.bert.embeddings.word_embeddings.weight
    assert torch.equal(words, reference.bert.embeddings.word_embeddings.weight)


def test_load_model_rejects_an_unknown_pooling():
    with pytest.raises(ValueError, match="pooling must be one of"):
        load_model(pooling="max")


def test_mean_pool_classifier_refuses_a_model_without_a_bert_encoder():
    from minilora.models import MeanPoolClassifier

    with pytest.raises(TypeError, match="model must be a BERT"):
        MeanPoolClassifier(torch.nn.Linear(2, 2))
