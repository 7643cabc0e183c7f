import copy
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def _minilm_once():
    from minilora.models import load_model

    return load_model()


@pytest.fixture
def minilm(_minilm_once):
    """A fresh copy of (model, tokenizer): the packaged MiniLM with a seed-0 classifier."""
    model, tokenizer = _minilm_once
    return copy.deepcopy(model), tokenizer
