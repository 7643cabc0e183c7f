"""minilora.course.cache: cache keys derived from arguments, code and data; entries stored
atomically; cached_fit."""

import os
import stat

import numpy as np
import pytest
import torch

from minilora.course import cache

MODULE = "minilora.course.runs"  # any module with a closure; the key's code part
KEY = "0123456789abcdef0123"  # any hex digest


@pytest.fixture
def where(tmp_path, monkeypatch):
    monkeypatch.setenv("MINILORA_CACHE", str(tmp_path))
    return tmp_path


def store_twice(compute):
    key = cache.cache_key({"a": 1}, MODULE)
    return cache.load_or_compute("x", key, compute), cache.load_or_compute("x", key, compute)


def weights_and_meta(calls):
    def compute():
        calls.append(1)
        return {"w": torch.arange(6.0).reshape(2, 3)}, {"acc": 0.5}

    return compute


def test_second_call_is_a_hit_and_computes_nothing(where):
    calls = []
    (_, _, hit1), (_, _, hit2) = store_twice(weights_and_meta(calls))
    assert (hit1, hit2) == (False, True) and calls == [1]


def test_a_hit_returns_the_stored_tensors_and_meta(where):
    (t1, _, _), (t2, m2, _) = store_twice(weights_and_meta([]))
    assert torch.equal(t1["w"], t2["w"]) and m2 == {"acc": 0.5}


def test_storing_leaves_no_temp_files(where):
    store_twice(weights_and_meta([]))
    assert not list(where.glob(".*tmp"))


def test_key_is_deterministic(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("a")
    assert cache.cache_key({"a": 1}, MODULE, [f]) == cache.cache_key({"a": 1}, MODULE, [f])


def test_key_depends_on_params(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("a")
    assert cache.cache_key({"a": 1}, MODULE, [f]) != cache.cache_key({"a": 2}, MODULE, [f])


def test_key_depends_on_the_contents_of_files(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("a")
    k1 = cache.cache_key({"a": 1}, MODULE, [f])
    f.write_text("b")
    assert k1 != cache.cache_key({"a": 1}, MODULE, [f])


def test_key_hashes_tensors_by_content_not_by_repr():
    a = torch.zeros(2000)
    b = torch.zeros(2000)
    b[1000] = 1.0  # the truncated repr of a and b is the same
    assert repr(a) == repr(b)
    assert cache.cache_key({"t": a}, MODULE) != cache.cache_key({"t": b}, MODULE)


def test_equal_tensors_give_the_same_key():
    a = torch.zeros(2000)
    assert cache.cache_key({"t": a}, MODULE) == cache.cache_key({"t": a.clone()}, MODULE)


def test_key_depends_on_the_tensor_dtype():
    a = torch.zeros(2000)
    assert cache.cache_key({"t": a}, MODULE) != cache.cache_key({"t": a.double()}, MODULE)


def test_key_hashes_numpy_arrays_by_content():
    assert cache.cache_key({"x": np.ones(3)}, MODULE) != cache.cache_key({"x": np.ones(4)}, MODULE)


def test_key_refuses_values_it_cannot_hash_by_content():
    with pytest.raises(TypeError, match=r"params\['f'\]"):
        cache.cache_key({"f": object()}, MODULE)


def test_import_closure_follows_function_level_imports():
    closure = cache.import_closure("minilora.course.runs")
    for dependency in ("minilora.adamw", "minilora.train", "minilora.data", "minilora.lora.layer",
                       "minilora.models", "minilora.course.cache", "minilora.checks"):
        assert dependency in closure


def test_import_closure_of_the_runs_leaves_out_figures_and_widgets():
    closure = cache.import_closure("minilora.course.runs")
    assert not any(m.startswith(("minilora.viz", "minilora.widgets")) for m in closure)


def test_import_closure_includes_parent_inits_without_what_they_re_export():
    closure = cache.import_closure("minilora.course.runs")
    assert "minilora" in closure and "minilora.course" in closure  # their __init__ files run
    assert not any(m.startswith(("minilora.qlora", "minilora.quant", "minilora.adalora", "minilora.paged"))
                   for m in closure)


def test_editing_what_only_a_parent_init_imports_keeps_the_key(pkg):
    (pkg / "__init__.py").write_text("from . import c\n")   # the package re-exports c
    key = cache.cache_key({}, "pkg.a", files=[], root=pkg)
    (pkg / "c.py").write_text("x = 3\n")
    assert cache.cache_key({}, "pkg.a", files=[], root=pkg) == key
    (pkg / "a.py").write_text("from . import c\n")           # now a imports it itself
    key = cache.cache_key({}, "pkg.a", files=[], root=pkg)
    (pkg / "c.py").write_text("x = 4\n")
    assert cache.cache_key({}, "pkg.a", files=[], root=pkg) != key


def _package(root, b_source):
    pkg = root / "pkg"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from . import b\n    return b.g()\n")
    (pkg / "b.py").write_text(b_source)
    (pkg / "c.py").write_text("x = 1\n")
    return pkg


@pytest.fixture
def pkg(tmp_path):
    """A package: pkg.a imports pkg.b inside a function; pkg.c is imported by nobody."""
    return _package(tmp_path, "def g():\n    return 1\n")


def test_import_closure_of_a_module_is_its_package_and_dependencies(pkg):
    assert set(cache.import_closure("pkg.a", pkg)) == {"pkg", "pkg.a", "pkg.b"}


def test_editing_a_module_outside_the_closure_keeps_the_key(pkg):
    key = cache.cache_key({}, "pkg.a", files=[], root=pkg)
    (pkg / "c.py").write_text("x = 2\n")  # not a dependency of pkg.a
    assert cache.cache_key({}, "pkg.a", files=[], root=pkg) == key


def test_editing_a_dependency_changes_the_key(pkg):
    key = cache.cache_key({}, "pkg.a", files=[], root=pkg)
    (pkg / "b.py").write_text("def g():\n    return 2\n")  # a dependency, imported inside a function
    assert cache.cache_key({}, "pkg.a", files=[], root=pkg) != key


def test_key_covers_the_optimizer_source():
    assert "minilora.adamw" in cache.import_closure("minilora.course.runs")


def test_corrupt_entry_is_recomputed(where):
    key = cache.cache_key({"b": 1}, MODULE)
    (where / f"y-{key}.safetensors").write_bytes(b"not a safetensors file")
    t, m, hit = cache.load_or_compute("y", key, lambda: ({"v": torch.ones(2)}, {}))
    assert not hit and torch.equal(t["v"], torch.ones(2))
    assert cache.load_or_compute("y", key, lambda: 1 / 0)[2]


def test_failed_compute_leaves_nothing(where):
    with pytest.raises(ZeroDivisionError):
        cache.load_or_compute("z", KEY, lambda: 1 / 0)
    assert not list(where.iterdir())


def test_disabled_cache_always_computes(monkeypatch):
    monkeypatch.setenv("MINILORA_CACHE", "off")
    assert cache.cache_dir() is None
    assert not cache.load_or_compute("w", KEY, lambda: ({"v": torch.ones(1)}, {}))[2]


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".hidden", "x/../../y", 3])
def test_entry_name_cannot_leave_the_cache_folder(where, name):
    with pytest.raises(ValueError, match="name"):
        cache.load_or_compute(name, KEY, lambda: ({"v": torch.ones(1)}, {}))
    assert not list(where.parent.glob("x*"))


def test_unwritable_cache_warns_and_returns_the_result(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("MINILORA_CACHE", str(blocker))
    with pytest.warns(RuntimeWarning, match="could not store cache entry"):
        t, meta, hit = cache.load_or_compute("v", KEY, lambda: ({"v": torch.ones(1)}, {"a": 1}))
    assert not hit and meta == {"a": 1} and torch.equal(t["v"], torch.ones(1))


def test_meta_that_is_not_json_warns_and_returns_the_result(where):
    with pytest.warns(RuntimeWarning, match="could not store"):
        _, meta, _ = cache.load_or_compute("m", KEY, lambda: ({"v": torch.ones(1)}, {"x": object()}))
    assert "x" in meta and not list(where.iterdir())


def test_entries_honour_the_umask(where):
    old = os.umask(0o022)
    try:
        cache.load_or_compute("p", KEY, lambda: ({"v": torch.ones(1)}, {}))
    finally:
        os.umask(old)
    (entry,) = where.glob(f"p-{KEY}.safetensors")
    assert stat.S_IMODE(entry.stat().st_mode) == 0o644


def test_cached_fit_restores_the_trained_parameters(where):
    model = torch.nn.Linear(3, 2)
    model.bias.requires_grad_(False)

    def fit():
        with torch.no_grad():
            model.weight.fill_(7.0)
        return {"score": 1.0}

    meta, hit = cache.cached_fit("fit", {"p": 1}, model, fit, module=MODULE)
    assert (meta, hit) == ({"score": 1.0}, False)
    fresh = torch.nn.Linear(3, 2)
    fresh.bias.requires_grad_(False)
    meta2, hit2 = cache.cached_fit("fit", {"p": 1}, fresh, lambda: 1 / 0, module=MODULE)
    assert hit2 and meta2 == meta and torch.equal(fresh.weight, torch.full((2, 3), 7.0))
