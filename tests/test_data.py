import collections

import pytest
import torch

from minilora.data import DOMAINS, SPLITS, Encoded, batches, encode, label_of, load_snippets

# Rows per domain and split (all rows / labelled rows); documented in data/README.md.
COUNTS = {
    "movie": {"train": (8484, 8460), "val": (1060, 1052), "test": (1061, 1056)},
    "amazon": {"train": (2966, 2893), "val": (370, 352), "test": (372, 365)},
    "nyt": {"train": (4152, 3953), "val": (519, 497), "test": (519, 496)},
    "tweets": {"train": (3360, 3356), "val": (420, 420), "test": (420, 420)},
}


def test_total_rows_and_neutral_rows():
    rows = [s for d in DOMAINS for s in load_snippets(d, "all", include_neutral=True)]
    assert len(rows) == 23_703
    assert sum(s.label is None for s in rows) == 383
    assert all(-4 <= s.valence <= 4 for s in rows)


@pytest.mark.parametrize("domain", DOMAINS)
def test_split_counts_are_80_10_10_and_disjoint(domain):
    every = load_snippets(domain, "all", include_neutral=True)
    parts = {s: load_snippets(domain, s, include_neutral=True) for s in ("train", "val", "test")}
    for split, (n_all, n_labelled) in COUNTS[domain].items():
        assert len(parts[split]) == n_all
        assert len(load_snippets(domain, split)) == n_labelled
    ids = [s.id for p in parts.values() for s in p]
    assert len(ids) == len(set(ids)) == len(every)
    assert len(parts["train"]) == int(0.8 * len(every))


def test_splits_are_deterministic_and_in_source_order():
    a = load_snippets("tweets", "val")
    b = load_snippets("tweets", "val")
    assert a == b
    order = {s.id: i for i, s in enumerate(load_snippets("tweets", "all", include_neutral=True))}
    assert [order[s.id] for s in a] == sorted(order[s.id] for s in a)


def test_label_rule():
    assert label_of(0.1) == 1 and label_of(-0.1) == 0 and label_of(0.0) is None
    for s in load_snippets("movie", "all", include_neutral=True):
        assert s.label == (1 if s.valence > 0 else 0 if s.valence < 0 else None)


def test_known_first_row_and_unicode():
    first = load_snippets("movie", "all")[0]
    assert first.id == "1" and abs(first.valence - 2.26666666667) < 1e-12 and first.label == 1
    assert first.text.startswith("The Rock is destined")
    assert any(not s.text.isascii() for s in load_snippets("movie", "all"))


@pytest.mark.parametrize("kw,match", [
    (dict(domain="imdb"), r"domain must be one of \('movie', 'amazon', 'nyt', 'tweets'\)"),
    (dict(split="dev"), r"split must be one of \('train', 'val', 'test', 'all'\)"),
])
def test_bad_domain_or_split(kw, match):
    with pytest.raises(ValueError, match=match):
        load_snippets(**kw)


def test_splits_constant_lists_every_split():
    assert set(SPLITS) == {"train", "val", "test", "all"}


def test_encode_and_dynamic_padding(minilm):
    _, tok = minilm
    data = encode(load_snippets("tweets", "test"), tok, max_length=32)
    assert isinstance(data, Encoded) and len(data) == 420
    assert data.input_ids.shape[1] <= 32
    assert collections.Counter(data.labels.tolist()) == {1: 297, 0: 123}
    seen = []
    for b in batches(data, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)):
        width = b["input_ids"].shape[1]
        assert b["attention_mask"].shape == b["input_ids"].shape
        assert int(b["attention_mask"].sum(1).max()) == width  # trimmed to the longest row
        seen.append(len(b["labels"]))
    assert sum(seen) == 420 and max(seen) == 64
    ordered = list(batches(data, batch_size=100))
    assert torch.equal(torch.cat([b["labels"] for b in ordered]), data.labels)


def test_shuffled_batches_cover_every_row_once(minilm):
    _, tok = minilm
    data = encode(load_snippets("amazon", "val"), tok)
    data.labels = torch.arange(len(data))  # tag rows to check coverage
    got = torch.cat([b["labels"] for b in batches(data, 16, shuffle=True, generator=torch.Generator())])
    assert sorted(got.tolist()) == list(range(len(data)))


def test_encode_bad_input(minilm):
    _, tok = minilm
    with pytest.raises(ValueError, match="max_length"):
        encode(load_snippets("tweets", "test"), tok, max_length=1)
    with pytest.raises(ValueError, match="neutral"):
        encode(load_snippets("movie", "all", include_neutral=True), tok)
    with pytest.raises(ValueError, match="empty"):
        encode([], tok)
    with pytest.raises(ValueError, match="batch_size"):
        next(batches(encode(load_snippets("tweets", "test"), tok), batch_size=0))
