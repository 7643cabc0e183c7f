"""minilora: LoRA, AdaLoRA and QLoRA from scratch in readable PyTorch.

Public names only; each lives in the module named for its concept.
"""

__version__ = "0.1.0"

from .data import DOMAINS, Snippet, encode, load_snippets
from .models import load_model, pick_device
from .train import binomial_se, compare, evaluate, predict, train

__all__ = [
    "DOMAINS", "Snippet", "binomial_se", "compare", "encode", "evaluate", "load_model",
    "load_snippets", "pick_device", "predict", "train",
]
