import pytest
import torch

from minilora import cache


@pytest.fixture
def where(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILORA_CACHE", str(tmp_path))
    return tmp_path


def test_miss_then_hit(where):
    calls = []

    def compute():
        calls.append(1)
        return {"w": torch.arange(6.0).reshape(2, 3)}, {"acc": 0.5}

    key = cache.cache_key({"a": 1})
    t1, m1, hit1 = cache.load_or_compute("x", key, compute)
    t2, m2, hit2 = cache.load_or_compute("x", key, compute)
    assert (hit1, hit2) == (False, True) and calls == [1]
    assert torch.equal(t1["w"], t2["w"]) and m2 == {"acc": 0.5}
    assert not list(where.glob("*.tmp"))


def test_key_depends_on_params_and_files(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("a")
    k1 = cache.cache_key({"a": 1}, [f])
    assert k1 == cache.cache_key({"a": 1}, [f])
    assert k1 != cache.cache_key({"a": 2}, [f])
    f.write_text("b")
    assert k1 != cache.cache_key({"a": 1}, [f])


def test_corrupt_entry_is_recomputed(where):
    key = cache.cache_key({"b": 1})
    (where / f"y-{key}.safetensors").write_bytes(b"not a safetensors file")
    t, m, hit = cache.load_or_compute("y", key, lambda: ({"v": torch.ones(2)}, {}))
    assert not hit and torch.equal(t["v"], torch.ones(2))
    assert cache.load_or_compute("y", key, lambda: 1 / 0)[2]


def test_failed_compute_leaves_nothing(where):
    with pytest.raises(ZeroDivisionError):
        cache.load_or_compute("z", "k", lambda: 1 / 0)
    assert not list(where.iterdir())


def test_disabled(monkeypatch):
    monkeypatch.setenv("MINILORA_CACHE", "off")
    assert cache.cache_dir() is None
    assert not cache.load_or_compute("w", "k", lambda: ({"v": torch.ones(1)}, {}))[2]
