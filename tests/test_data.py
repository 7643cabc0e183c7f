"""minilora.data: the four sentiment domains, their splits, encoding, batches and samples."""

import collections
import dataclasses

import pytest
import torch

from minilora.data import (
    DOMAINS,
    SPLITS,
    Encoded,
    batches,
    encode,
    encode_sample,
    label_of,
    load_snippets,
    sample_snippets,
)

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


def test_known_first_row():
    first = load_snippets("movie", "all")[0]
    assert first.id == "1" and abs(first.valence - 2.26666666667) < 1e-12 and first.label == 1
    assert first.text.startswith("The Rock is destined")


def test_unicode_text_is_kept():
    assert any(not s.text.isascii() for s in load_snippets("movie", "all"))


@pytest.mark.parametrize("kw,match", [
    (dict(domain="imdb"), r"domain must be one of \('movie', 'amazon', 'nyt', 'tweets'\)"),
    (dict(split="dev"), r"split must be one of \('train', 'val', 'test', 'all'\)"),
])
def test_load_snippets_rejects_an_unknown_domain_or_split(kw, match):
    with pytest.raises(ValueError, match=match):
        load_snippets(**kw)


def test_splits_constant_lists_every_split():
    assert set(SPLITS) == {"train", "val", "test", "all"}


@pytest.fixture
def tweets_test(minilm_read_only):
    """The 420 tweets of the test split, encoded at max_length 32."""
    return encode(load_snippets("tweets", "test"), minilm_read_only[1], max_length=32)


def test_encode_keeps_every_row_and_label(tweets_test):
    data = tweets_test
    assert isinstance(data, Encoded) and len(data) == 420
    assert collections.Counter(data.labels.tolist()) == {1: 297, 0: 123}


def test_encode_truncates_to_max_length(tweets_test):
    assert tweets_test.input_ids.shape[1] <= 32


def test_batches_are_padded_to_their_longest_row(tweets_test):
    for b in batches(tweets_test, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)):
        width = b["input_ids"].shape[1]
        assert b["attention_mask"].shape == b["input_ids"].shape
        assert int(b["attention_mask"].sum(1).max()) == width  # trimmed to the longest row


def test_batches_have_batch_size_rows_and_cover_the_data(tweets_test):
    seen = [len(b["labels"]) for b in batches(tweets_test, batch_size=64, shuffle=True,
                                              generator=torch.Generator().manual_seed(0))]
    assert sum(seen) == 420 and max(seen) == 64


def test_unshuffled_batches_keep_row_order(tweets_test):
    ordered = list(batches(tweets_test, batch_size=100))
    assert torch.equal(torch.cat([b["labels"] for b in ordered]), tweets_test.labels)


def test_shuffled_batches_cover_every_row_once(minilm_read_only):
    _, tok = minilm_read_only
    data = encode(load_snippets("amazon", "val"), tok)
    data = dataclasses.replace(data, labels=torch.arange(len(data)))  # tag rows to check coverage
    got = torch.cat([b["labels"] for b in batches(data, 16, shuffle=True, generator=torch.Generator())])
    assert sorted(got.tolist()) == list(range(len(data)))


def test_encode_rejects_max_length_below_two(minilm_read_only):
    with pytest.raises(ValueError, match="max_length"):
        encode(load_snippets("tweets", "test"), minilm_read_only[1], max_length=1)


def test_encode_rejects_unlabelled_neutral_rows(minilm_read_only):
    with pytest.raises(ValueError, match="neutral"):
        encode(load_snippets("movie", "all", include_neutral=True), minilm_read_only[1])


def test_encode_rejects_no_rows(minilm_read_only):
    with pytest.raises(ValueError, match="empty"):
        encode([], minilm_read_only[1])


def test_batches_rejects_batch_size_zero(minilm_read_only):
    with pytest.raises(ValueError, match="batch_size"):
        next(batches(encode(load_snippets("tweets", "test"), minilm_read_only[1]), batch_size=0))


# --- samples ----------------------------------------------------------------------------------------

def test_sample_snippets_is_balanced():
    first = [s.label for s in sample_snippets("movie", "test", 200)]
    assert 0.35 < sum(first) / 200 < 0.65  # the file's first 200 rows are ~96 % positive


def test_sample_snippets_is_reproducible_and_seeded():
    ids = [s.id for s in sample_snippets("movie", "test", 200)]
    assert ids == [s.id for s in sample_snippets("movie", "test", 200)]
    assert ids != [s.id for s in sample_snippets("movie", "test", 200, seed=1)]


def test_sample_snippets_is_a_subset_of_the_split():
    ids = [s.id for s in sample_snippets("movie", "test", 200)]
    assert set(ids) <= {s.id for s in sample_snippets("movie", "test")}


def test_sample_snippets_larger_than_the_split_is_the_whole_split():
    assert len(sample_snippets("amazon", "test", 10_000)) == 365


def test_sample_snippets_rejects_n_zero():
    with pytest.raises(ValueError, match="n must be"):
        sample_snippets("movie", "test", 0)


def test_encode_sample_encodes_the_sample_in_source_order(minilm_read_only):
    _, tokenizer = minilm_read_only
    enc = encode_sample("nyt", "test", tokenizer, 50, max_length=32)
    rows = sample_snippets("nyt", "test", 50)
    assert len(enc) == 50 and enc.labels.tolist() == [s.label for s in rows]


@pytest.fixture
def movie_test(minilm_read_only):
    return encode(load_snippets("movie", "test"), minilm_read_only[1])


def test_subset_is_a_seeded_sample_not_a_prefix(movie_test):
    sample = movie_test.subset(300)
    assert len(sample) == 300 and torch.equal(sample.labels, movie_test.subset(300).labels)
    assert 0.35 < sample.labels.float().mean() < 0.65  # the first 300 rows are mostly positive


def test_subset_larger_than_the_data_is_the_data(movie_test):
    assert movie_test.subset(5000) is movie_test


def test_subset_rejects_n_zero(movie_test):
    with pytest.raises(ValueError, match="n must"):
        movie_test.subset(0)
