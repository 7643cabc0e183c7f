"""Fixtures shared by several test files (one test file per module: tests/test_<package>_<module>.py).

Models are built once where possible: ``_minilm_once`` loads the packaged MiniLM a single
time per session and the other MiniLM fixtures hand out deep copies of it.
"""

import copy
import importlib.util
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


ROOT = Path(__file__).resolve().parent.parent


def load_script(relative_path: str):
    """Import a repository script (e.g. ``scripts/gpu_check.py``) as a module, registered in
    ``sys.modules`` under ``_script_<stem>`` (a script's dataclasses need that)."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(f"_script_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def script():
    """``script("data/prepare.py")`` -> that file imported as a module."""
    return load_script


# ---- MiniLM (the packaged model) -------------------------------------------------------------

@pytest.fixture(scope="session")
def _minilm_once():
    from minilora.models import load_model

    return load_model()


@pytest.fixture
def minilm(_minilm_once):
    """A fresh copy of (model, tokenizer): the packaged MiniLM with a seed-0 classifier."""
    model, tokenizer = _minilm_once
    return copy.deepcopy(model), tokenizer


@pytest.fixture
def minilm_read_only(_minilm_once):
    """The session's (model, tokenizer) itself, not a copy: only for tests that never change it."""
    return _minilm_once


@pytest.fixture
def minilm_model(_minilm_once):
    """A fresh copy of the packaged MiniLM, in eval mode."""
    return copy.deepcopy(_minilm_once[0]).eval()


@pytest.fixture(scope="session")
def minilm_inputs(_minilm_once):
    """Model inputs (no labels) for 16 movie test snippets at max_length 32; shared, read-only."""
    import torch

    from minilora.data import encode, load_snippets

    encoded = encode(load_snippets("movie", "test")[:16], _minilm_once[1], max_length=32)
    batch = encoded.batch(torch.arange(16))
    batch.pop("labels")
    return batch


def _logits(model, inputs):
    import torch

    model.eval()
    with torch.no_grad():
        return model(**inputs).logits


def _randomize_b(model, seed=1, std=0.05):
    import torch

    from minilora.lora import lora_layers

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=gen) * std)


@pytest.fixture
def logits():
    """``logits(model, inputs)``: the model's logits in eval mode, without gradients."""
    return _logits


@pytest.fixture
def randomize_b():
    """``randomize_b(model, seed=1, std=0.05)``: every LoRA B set to seeded N(0, std²) (B = 0 is a no-op)."""
    return _randomize_b


# ---- tiny BERTs built from a config (no download) ---------------------------------------------

def _tiny_bert(seed=0, layers=2):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=60, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=40, max_position_embeddings=32, num_labels=2)
    return BertForSequenceClassification(config).eval()


def _tiny_data(n=48, length=10, seed=0):
    import torch

    from minilora.data import Encoded

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 60, (n, length), generator=g)
    return Encoded(ids, torch.ones(n, length, dtype=torch.long), torch.randint(0, 2, (n,), generator=g))


def _perturbed(base, scale=0.5, seed=1):
    import torch

    from minilora.rank.delta import encoder_matrices

    tuned = copy.deepcopy(base)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lin in encoder_matrices(tuned).values():
            lin.weight.add_(scale * torch.randn(lin.weight.shape, generator=g))
        tuned.classifier.bias.add_(0.3)
    return tuned


@pytest.fixture
def tiny_bert():
    """``tiny_bert(seed=0, layers=2)``: a 16-wide BERT classifier (vocab 60) in eval mode."""
    return _tiny_bert


@pytest.fixture
def tiny_data():
    """``tiny_data(n=48, length=10, seed=0)``: random token ids for ``tiny_bert`` with random labels."""
    return _tiny_data


@pytest.fixture
def perturbed():
    """``perturbed(base, scale=0.5, seed=1)``: a copy of ``base`` with a random full-rank change to
    every encoder matrix and the head's bias (a stand-in for a fine-tune)."""
    return _perturbed


def _training_bert(layers=2):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=layers, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    return BertForSequenceClassification(config).train()


def _bert_batch(n, length=16):
    import torch

    g = torch.Generator().manual_seed(0)
    return {"input_ids": torch.randint(0, 100, (n, length), generator=g),
            "attention_mask": torch.ones(n, length, dtype=torch.long),
            "labels": torch.randint(0, 2, (n,), generator=g)}


@pytest.fixture
def training_bert():
    """``training_bert(layers=2)``: a 32-wide BERT classifier (vocab 100) in train mode."""
    return _training_bert


@pytest.fixture
def bert_batch():
    """``bert_batch(n, length=16)``: a seeded labelled batch for ``training_bert``."""
    return _bert_batch


# ---- small optimizer problems (minilora.adamw, minilora.paged) --------------------------------

def _mlp(seed=0, device="cpu"):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layers = [nn.Linear(12, 32), nn.GELU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 3)]
    return nn.Sequential(*layers).to(device)


def _lora_style(seed=0):
    """A frozen base layer plus a trainable low-rank pair A, B and a head: LoRA's param groups."""
    import torch
    from torch import nn

    class LoRAStyle(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(seed)
            self.base = nn.Linear(12, 24)
            self.base.requires_grad_(False)
            self.A = nn.Parameter(torch.randn(4, 12) * 0.1)
            self.B = nn.Parameter(torch.zeros(24, 4))
            self.head = nn.Linear(24, 3)

        def forward(self, x):
            return self.head(torch.tanh(self.base(x) + x @ self.A.T @ self.B.T))

        def groups(self):
            return [{"params": [self.A, self.B], "lr": 5e-2, "weight_decay": 0.0},
                    {"params": list(self.head.parameters())}]

    return LoRAStyle()


def _train_steps(model, opt, steps, seed=1, device="cpu"):
    import torch
    from torch import nn

    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, 12, generator=gen).to(device)
        y = torch.randint(0, 3, (16,), generator=gen).to(device)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _max_diff(a, b):
    return max((p - q).abs().max().item() for p, q in zip(a.parameters(), b.parameters()))


BAD_HYPERPARAMETERS = [  # (kwargs, the parameter the error must name), for AdamW and PagedAdamW
    (dict(lr=-1e-3), "lr"), (dict(lr=float("nan")), "lr"), (dict(betas=(1.0, 0.999)), "betas[0]"),
    (dict(betas=(0.9, -0.1)), "betas[1]"), (dict(betas=(0.9,)), "betas"), (dict(eps=0.0), "eps"),
    (dict(eps=-1e-8), "eps"), (dict(weight_decay=-0.01), "weight_decay"), (dict(lr="0.1"), "lr"),
    (dict(lr=True), "lr"),
]


@pytest.fixture
def optim_kit():
    """Small optimizer problems: ``mlp(seed, device)``, ``lora_style(seed)`` (frozen base + A, B +
    head, with ``.groups()``), ``train_steps(model, opt, steps, seed, device)`` (cross-entropy on
    a seeded stream of batches) and ``max_diff(a, b)`` (largest parameter difference)."""
    return SimpleNamespace(mlp=_mlp, lora_style=_lora_style, train_steps=_train_steps, max_diff=_max_diff)


class FakeCudart:
    """Python stand-in for libcudart: the same functions, byref outputs, integer error codes."""

    ERRORS = {0: b"cudaSuccess", 1: b"cudaErrorInvalidValue", 2: b"cudaErrorMemoryAllocation"}

    def __init__(self, version=12040, malloc_error=0):
        self.version, self.malloc_error = version, malloc_error
        self.freed, self.prefetches, self.next_ptr = [], [], 0x7000_0000

    def cudaGetErrorName(self, code):
        return self.ERRORS.get(code, b"cudaErrorUnknown")

    def cudaRuntimeGetVersion(self, out):
        out._obj.value = self.version
        return 0

    def cudaMallocManaged(self, ptr, nbytes, flags):
        from minilora.paged import cuda

        assert flags == cuda.CUDA_MEM_ATTACH_GLOBAL
        if self.malloc_error:
            return self.malloc_error
        ptr._obj.value, self.next_ptr = self.next_ptr, self.next_ptr + nbytes + 256
        return 0

    def cudaFree(self, ptr):
        self.freed.append(ptr.value)
        return 0

    def cudaMemPrefetchAsync(self, *args):
        self.prefetches.append(args)
        return 0


@pytest.fixture
def fake_cudart():
    """The ``FakeCudart`` class: ``fake_cudart(version=12040, malloc_error=0)`` is a stand-in
    libcudart for ``minilora.paged.cuda.CudaRuntime`` on any machine."""
    return FakeCudart


# ---- quantisation ------------------------------------------------------------------------------

@pytest.fixture
def quant_weights():
    """Two weight matrices: ``a.query`` Gaussian (64 × 96), ``b.dense`` Student t(3), heavy-tailed."""
    import torch

    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)  # StudentT draws from the global generator
        heavy = torch.distributions.StudentT(3.0).sample((96, 64)) * 0.05
    return {"a.query": torch.randn(64, 96, generator=g) * 0.05, "b.dense": heavy}
