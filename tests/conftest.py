import copy
import importlib.util
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


ROOT = Path(__file__).resolve().parent.parent


def load_script(relative_path: str):
    """Import a repository script (e.g. ``scripts/gpu_check.py``) as a module."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def script():
    """``script("data/prepare.py")`` -> that file imported as a module."""
    return load_script


@pytest.fixture(scope="session")
def _minilm_once():
    from minilora.models import load_model

    return load_model()


@pytest.fixture
def minilm(_minilm_once):
    """A fresh copy of (model, tokenizer): the packaged MiniLM with a seed-0 classifier."""
    model, tokenizer = _minilm_once
    return copy.deepcopy(model), tokenizer
