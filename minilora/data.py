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
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from .checks import ArgumentTypeError, check_choice, check_int, check_number

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

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id.strip():
            raise TypeError(f"id must be a non-empty str, got {self.id!r}")
        if not isinstance(self.text, str):
            raise TypeError(f"text must be a str, got {type(self.text).__name__}")
        check_number(self.valence, "valence")
        if self.label is not None and (isinstance(self.label, bool) or self.label not in (0, 1)):
            raise ValueError(f"label must be 0, 1 or None, got {self.label!r}")


def data_dir() -> Path:
    """The folder with the committed ``<domain>.tsv`` files (wheel copy or source tree)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_data", here.parent / "data"):
        if (candidate / "movie.tsv").is_file():
            return candidate
    raise FileNotFoundError(f"sentiment snippets not found next to {here}; reinstall minilora")


VALENCE_RANGE = (-4.0, 4.0)
HEADER = "id\tvalence\ttext"


def label_of(valence: float) -> int | None:
    """The label rule: positive valence -> 1, negative -> 0, exactly 0 -> None (NaN refused)."""
    valence = check_number(valence, "valence")
    return 1 if valence > 0 else 0 if valence < 0 else None


NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def read_tsv(path) -> list[Snippet]:
    """The rows of one snippet file (``id<TAB>valence<TAB>text`` under that header line).

    Every row is checked: three fields, a unique id without surrounding spaces, a plain
    decimal valence in [−4, 4], a non-empty text, valid UTF-8. A bad row raises
    ``ValueError`` naming the file and line.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path, got {type(path).__name__}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path must be a snippet file (.tsv), {path} is "
                                f"{'a folder' if path.is_dir() else 'missing'}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(f"{path}:{line}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    lines = text.split("\n")
    if lines[0] != HEADER:
        raise ValueError(f"{path}:1: the header must be {HEADER!r}, got {lines[0][:80]!r}")
    rows, seen = [], set()
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{path}:{number}: expected 3 tab-separated fields (id, valence, text), "
                             f"got {len(fields)}")
        rid, raw, text = fields
        if not NUMBER.fullmatch(raw):  # float() would also take '0_3', 'nan', ' 1'
            raise ValueError(f"{path}:{number}: valence {raw!r} is not a number")
        valence = float(raw)
        if not VALENCE_RANGE[0] <= valence <= VALENCE_RANGE[1]:  # False for NaN too
            raise ValueError(f"{path}:{number}: valence must be a finite number in [-4, 4], got {raw!r}")
        if not rid or rid != rid.strip() or rid in seen:
            raise ValueError(f"{path}:{number}: id {rid!r} is empty, has surrounding spaces or repeats an "
                             "earlier row")
        if not text.strip():
            raise ValueError(f"{path}:{number}: the text is empty")
        seen.add(rid)
        rows.append(Snippet(rid, text, valence, label_of(valence)))
    if not rows:
        raise ValueError(f"{path} holds no rows")
    return rows


@functools.cache
def _split_rows(domain: str) -> dict[str, tuple[Snippet, ...]]:
    rows = read_tsv(data_dir() / f"{domain}.tsv")
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
    check_choice(domain, "domain", DOMAINS)
    check_choice(split, "split", SPLITS)
    if not isinstance(include_neutral, bool):
        raise ArgumentTypeError(f"include_neutral must be True or False, got {include_neutral!r}")
    rows = _split_rows(domain)[split]
    return [s for s in rows if include_neutral or s.label is not None]


@dataclass(frozen=True)
class Encoded:
    """A tokenised split: right-padded ``input_ids``/``attention_mask`` (N x L), ``labels`` (N)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self):
        for name in ("input_ids", "attention_mask", "labels"):
            if not isinstance(getattr(self, name), torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(getattr(self, name)).__name__}")
        if self.input_ids.dim() != 2 or self.attention_mask.shape != self.input_ids.shape:
            raise ValueError(f"input_ids and attention_mask must be N x L of the same shape, got "
                             f"{tuple(self.input_ids.shape)} and {tuple(self.attention_mask.shape)}")
        if self.labels.dim() != 1 or self.labels.shape[0] != self.input_ids.shape[0]:
            raise ValueError(f"labels must be 1-D with one label per row ({self.input_ids.shape[0]}), "
                             f"got shape {tuple(self.labels.shape)}")
        for name in ("input_ids", "attention_mask", "labels"):
            t = getattr(self, name)
            if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
                raise TypeError(f"{name} must hold integers, got {t.dtype}")
        if self.labels.numel() and int(self.labels.min()) < 0:
            raise ValueError("labels must be class indices >= 0")
        if self.attention_mask.numel():
            if not bool(((self.attention_mask == 0) | (self.attention_mask == 1)).all()):
                raise ValueError("attention_mask must hold 0 (padding) and 1 (token) only")
            if not bool((self.attention_mask.sum(1) > 0).all()):
                raise ValueError("attention_mask has a row with no token")

    def __len__(self) -> int:
        return self.labels.shape[0]

    def batch(self, index) -> dict[str, torch.Tensor]:
        """Rows ``index``, trimmed to the longest sequence among them (dynamic padding)."""
        index = torch.as_tensor(index, dtype=torch.long)
        if index.dim() != 1 or index.numel() == 0:
            raise ValueError("index must be a non-empty 1-D list of row numbers")
        if int(index.min()) < -len(self) or int(index.max()) >= len(self):
            raise ValueError(f"index must hold row numbers in [0, {len(self)}), got {index.tolist()[:5]}...")
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


def check_nonempty(data, name: str = "data") -> int:
    """``len(data)`` of an ``Encoded`` with at least one row (a loop over no rows never ends or
    averages nothing)."""
    if not isinstance(data, Encoded):
        raise TypeError(f"{name} must be an Encoded (minilora.data.encode), got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"{name} has no rows")
    return len(data)


def encode(snippets, tokenizer, max_length=64) -> Encoded:
    """Tokenise once (truncate to ``max_length`` tokens); labels must all be 0/1."""
    check_int(max_length, "max_length", 2, 512)
    try:
        snippets = list(snippets)
    except TypeError:
        raise TypeError(f"snippets must be an iterable of Snippet, got {type(snippets).__name__}") from None
    if not snippets:
        raise ValueError("snippets is empty")
    for i, s in enumerate(snippets):
        if not isinstance(s, Snippet):
            raise TypeError(f"snippets[{i}] must be a Snippet, got {type(s).__name__}")
        if s.label is None:
            raise ValueError(f"snippets[{i}] is a neutral row (label None); load snippets with "
                             "include_neutral=False")
        if isinstance(s.label, bool) or s.label not in (0, 1):
            raise ValueError(f"snippets[{i}].label must be 0 or 1, got {s.label!r}")
        if not isinstance(s.text, str) or not s.text.strip():
            raise ValueError(f"snippets[{i}].text must be a non-empty string")
    if not callable(tokenizer):
        raise TypeError("tokenizer must be the model's tokenizer (a callable, e.g. from load_model), "
                        f"got {type(tokenizer).__name__}")
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
    try:
        keys = list(keys)
    except TypeError:
        raise TypeError(f"keys must be an iterable of item keys, got {type(keys).__name__}") from None
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
    check_int(batch_size, "batch_size", 1)
    check_int(bucket, "bucket", 1)
    n = check_nonempty(data)
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
