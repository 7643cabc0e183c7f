"""The human-rated sentiment snippets (Hutto & Gilbert, ICWSM 2014) and batching helpers.

Four domains, 23,703 rows: each snippet has a mean human valence in [-4, 4]. The binary
label is ``valence > 0 -> 1``, ``valence < 0 -> 0``; the 383 rows at exactly 0 have no
label (kept for regression, left out of classification unless ``include_neutral=True``).

Splits are deterministic and independent of library versions: rows are ordered by
``sha256("<domain>:<id>")`` and the first 80 % are ``train``, the next 10 % ``val``, the
rest ``test`` (computed over all rows, neutral ones included). Counts: data/README.md.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch

from .checks import check_int

DOMAINS = ("movie", "amazon", "nyt", "tweets")
SPLITS = ("train", "val", "test", "all")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)


@dataclass(frozen=True)
class Snippet:
    """One rated snippet. ``label`` is 1/0 for positive/negative valence, None at 0."""

    id: str
    text: str
    valence: float
    label: int | None


def data_dir() -> Path:
    """The folder with the committed ``<domain>.tsv`` files (wheel copy or source tree)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data", here.parent / "data"):
        if (candidate / "movie.tsv").is_file():
            return candidate
    raise FileNotFoundError(f"sentiment snippets not found next to {here}; reinstall minilora")


def label_of(valence: float) -> int | None:
    """The label rule: positive valence -> 1, negative -> 0, exactly 0 -> None."""
    return 1 if valence > 0 else 0 if valence < 0 else None


@functools.cache
def _split_rows(domain: str) -> dict[str, tuple[Snippet, ...]]:
    lines = (data_dir() / f"{domain}.tsv").read_text(encoding="utf-8").split("\n")
    assert lines[0] == "id\tvalence\ttext", f"unexpected header in {domain}.tsv"
    rows = []
    for line in lines[1:]:
        if line:
            rid, valence, text = line.split("\t")
            rows.append(Snippet(rid, text, float(valence), label_of(float(valence))))
    order = sorted(range(len(rows)), key=lambda i: hashlib.sha256(f"{domain}:{rows[i].id}".encode()).digest())
    n_train = int(SPLIT_FRACTIONS[0] * len(rows))
    n_val = int(SPLIT_FRACTIONS[1] * len(rows))
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, len(rows))}
    split = {}
    for name, (lo, hi) in bounds.items():
        keep = sorted(order[lo:hi])  # source order inside each split
        split[name] = tuple(rows[i] for i in keep)
    split["all"] = tuple(rows)
    return split


def load_snippets(domain="movie", split="train", include_neutral=False) -> list[Snippet]:
    """Rows of one domain's split, in source order.

    ``domain`` is one of ``DOMAINS``; ``split`` one of ``train``/``val``/``test``/``all``.
    Neutral rows (valence exactly 0, ``label=None``) are dropped unless ``include_neutral``.
    """
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}, got {domain!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rows = _split_rows(domain)[split]
    return [s for s in rows if include_neutral or s.label is not None]


@dataclass
class Encoded:
    """A tokenised split: right-padded ``input_ids``/``attention_mask`` (N x L), ``labels`` (N)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]

    def batch(self, index) -> dict[str, torch.Tensor]:
        """Rows ``index``, trimmed to the longest sequence among them (dynamic padding)."""
        mask = self.attention_mask[index]
        width = int(mask.sum(1).max())
        return {"input_ids": self.input_ids[index, :width], "attention_mask": mask[:, :width],
                "labels": self.labels[index]}

    def subset(self, n: int, seed: int = 0) -> Encoded:
        """A random sample of ``n`` rows (``sample_indices`` over the row numbers, kept in their
        original order); all rows if there are fewer. Not the first ``n``: some source files
        are sorted by label."""
        if check_int(n, "n", 1) >= len(self):
            return self
        keep = torch.tensor(sample_indices(range(len(self)), n, seed))
        return Encoded(self.input_ids[keep], self.attention_mask[keep], self.labels[keep])


def encode(snippets, tokenizer, max_length=64) -> Encoded:
    """Tokenise once (truncate to ``max_length`` tokens); labels must all be 0/1."""
    if not isinstance(max_length, int) or not 2 <= max_length <= 512:
        raise ValueError(f"max_length must be an int in 2..512, got {max_length!r}")
    snippets = list(snippets)
    if not snippets:
        raise ValueError("snippets is empty")
    if any(s.label is None for s in snippets):
        raise ValueError("snippets contains neutral rows (label None); load them with include_neutral=False")
    enc = tokenizer([s.text for s in snippets], padding="longest", truncation=True,
                    max_length=max_length, return_tensors="pt")
    return Encoded(enc["input_ids"], enc["attention_mask"], torch.tensor([s.label for s in snippets]))


def sample_indices(keys, n: int, seed: int = 0) -> list[int]:
    """Positions of ``n`` items drawn at random but reproducibly from ``keys`` (one hashable key
    per item, e.g. snippet ids), in their original order.

    Items are ranked by ``sha256("<seed>:<key>")`` and the first ``n`` kept: the draw depends
    on the keys and the seed only, not on the library version or the item order. All
    positions when ``n >= len(keys)``.
    """
    keys = list(keys)
    n = check_int(n, "n", 1)
    seed = check_int(seed, "seed", 0)
    if n >= len(keys):
        return list(range(len(keys)))
    order = sorted(range(len(keys)), key=lambda i: hashlib.sha256(f"{seed}:{keys[i]}".encode()).digest())
    return sorted(order[:n])


def sample_snippets(domain: str, split: str, n=None, seed=0) -> list[Snippet]:
    """``n`` rows of a split drawn by ``sample_indices`` over their ids (all rows if ``n`` is
    None), in source order. The files are sorted by label in places (movie: positives first),
    so "the first n rows" would be a biased sample."""
    rows = load_snippets(domain, split)
    if n is None:
        return rows
    return [rows[i] for i in sample_indices([r.id for r in rows], n, seed)]


def encode_sample(domain: str, split: str, tokenizer, n=None, max_length=64, seed=0) -> Encoded:
    """``encode(sample_snippets(domain, split, n, seed), tokenizer, max_length)``."""
    return encode(sample_snippets(domain, split, n, seed), tokenizer, max_length)


def batches(data: Encoded, batch_size=32, shuffle=False, generator=None, bucket=50):
    """Yield dynamic-padded batches of ``data`` (one pass).

    With ``shuffle``, rows are permuted with ``generator``; then each run of
    ``bucket * batch_size`` rows is sorted by length before it is cut into batches, and the
    batch order is shuffled again, so batches hold similar lengths and carry little padding
    (``bucket=1`` turns this off). Without ``shuffle``, rows come in order.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(bucket, int) or bucket < 1:
        raise ValueError(f"bucket must be a positive int, got {bucket!r}")
    n = len(data)
    if not shuffle:
        for lo in range(0, n, batch_size):
            yield data.batch(torch.arange(lo, min(lo + batch_size, n)))
        return
    order = torch.randperm(n, generator=generator)
    lengths = data.attention_mask.sum(1)
    chunks = []
    for lo in range(0, n, bucket * batch_size):
        run = order[lo:lo + bucket * batch_size]
        run = run[torch.argsort(lengths[run], stable=True)]
        chunks += [run[i:i + batch_size] for i in range(0, len(run), batch_size)]
    for j in torch.randperm(len(chunks), generator=generator).tolist():
        yield data.batch(chunks[j])
