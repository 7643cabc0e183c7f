"""A small on-disk cache for the expensive results the notebooks share (the full fine-tune
that 00, 01, 02 and 04 all use, the LoRA runs of 02, ...).

    meta, hit = cached_fit("baseline-full-movie", params, model, fit)

The key is derived, never listed by hand (``cache_key``): it covers

* the caller's parameters, tensors and arrays by their content (dtype, shape, bytes);
* the source of every minilora module the computation can run: the static import closure
  (``import_closure``, function-level imports included) of the module that defines it;
* the data files (``data/*.tsv``) and the torch version.

Editing any of them (the optimizer in ``adamw.py`` included) gives a new key, so a stale
result is never returned. A notebook that finds no entry recomputes, so every notebook
still runs on its own. Entries are written atomically (``minilora.files``); a corrupt
entry is recomputed, never trusted; a cache that cannot be written only warns — the
result is still returned. Location: ``$MINILORA_CACHE`` or ``~/.cache/minilora``;
``MINILORA_CACHE=off`` disables it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from ..data import data_dir
from ..files import atomic_write

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the minilora/ folder
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
KEY_PATTERN = re.compile(r"[0-9a-f]{8,64}")
OFF = ("off", "0", "none", "false", "no")


def cache_dir() -> Path | None:
    """The cache folder, or None when disabled with ``MINILORA_CACHE=off``."""
    env = os.environ.get("MINILORA_CACHE", "").strip()
    if env.lower() in OFF:
        return None
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "minilora"


def canonical(value, where: str = "params", _seen=None):
    """``value`` as JSON-able data in which every tensor/array is its content hash.

    Dicts (string keys, sorted), lists/tuples, str/int/float/bool/None, torch dtypes and
    devices pass through; anything else raises ``TypeError`` naming where it sits (no
    ``repr`` fallback: two different objects must never share a key).
    """
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):  # non-finite floats are tagged, so nan never equals the string 'nan'
        return value if np.isfinite(value) else {"float": repr(value)}
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if isinstance(value, torch.Tensor):
        if value.is_sparse or value.device.type == "meta":
            raise TypeError(f"{where} is a sparse or meta tensor; pass a dense tensor with values")
        value = value.detach().cpu().contiguous()
        raw = value.view(torch.uint8) if value.numel() else value
        return {"tensor": hashlib.sha256(raw.numpy().tobytes()).hexdigest(), "dtype": str(value.dtype),
                "shape": list(value.shape)}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biufc":
            raise TypeError(f"{where} is a NumPy array of {value.dtype}, which has no content to hash")
        return {"array": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest(),
                "dtype": str(value.dtype), "shape": list(value.shape)}
    if isinstance(value, (np.integer, np.floating)):
        return canonical(value.item(), where)
    _seen = set() if _seen is None else _seen
    if isinstance(value, (dict, list, tuple)):
        if id(value) in _seen:
            raise ValueError(f"{where} contains itself")
        _seen = _seen | {id(value)}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{where} must have string keys, got {list(value)[:5]!r}")
        return {k: canonical(v, f"{where}[{k!r}]", _seen) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [canonical(v, f"{where}[{i}]", _seen) for i, v in enumerate(value)]
    raise TypeError(f"{where} is a {type(value).__name__}, which a cache key cannot hash by content; "
                    "pass str, numbers, bools, None, tensors, arrays, lists or dicts")


def module_files(root: Path = PACKAGE_ROOT, package: str | None = None) -> dict[str, Path]:
    """``{dotted module name: file}`` for every .py file under the package folder ``root``
    (a package's ``__init__.py`` carries the package's own name)."""
    package = package or root.name
    out = {}
    for f in sorted(root.rglob("*.py")):
        parts = [package, *f.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imported_modules(name: str, source: str, is_package: bool, known) -> set[str]:
    """The modules of ``known`` that ``source`` (the code of module ``name``) imports anywhere,
    function bodies included. ``from pkg import x`` counts as importing ``pkg.x`` when that
    is a module, else as importing ``pkg``."""
    out = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in known:
                    out.add(sub)
                elif target in known:
                    out.add(target)
    out.discard(name)
    return out


def import_closure(module: str, root: Path = PACKAGE_ROOT) -> dict[str, Path]:
    """``{module name: file}`` of ``module`` and every module of its package it imports,
    transitively, read statically with ``ast`` (function-level imports count).

    Importing a module also runs its parent packages' ``__init__``, so their files are
    included too, but what a parent ``__init__`` imports is followed only when the module
    itself imports that package: ``minilora/__init__`` re-exports every idea, and an edit to
    the quantisation code must not invalidate a cached LoRA run that never calls it.
    """
    files = module_files(root, module.split(".")[0])
    todo, seen, followed = [(module, True)], {}, set()
    while todo:
        name, follow = todo.pop()
        if name not in files or name in followed or (name in seen and not follow):
            continue
        path = seen[name] = files[name]
        todo.extend((".".join(name.split(".")[:i]), False) for i in range(1, name.count(".") + 1))
        if follow:
            followed.add(name)
            source = path.read_text(encoding="utf-8")
            todo.extend((m, True) for m in imported_modules(name, source, path.name == "__init__.py", files))
    return dict(sorted(seen.items()))


def data_files() -> list[Path]:
    """The committed snippet files every cached computation may read."""
    return sorted(data_dir().glob("*.tsv"))


def cache_key(params: dict, module: str, files=None, root: Path = PACKAGE_ROOT) -> str:
    """sha256 of ``canonical(params)``, the sources of ``import_closure(module)``, the bytes of
    ``files`` (default: ``data_files()``) and the torch version; 20 hex digits."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict, got {type(params).__name__}")
    if not isinstance(module, str):
        raise TypeError(f"module must be a dotted module name (str), got {type(module).__name__}")
    closure = import_closure(module, root)
    if module not in closure:
        raise ValueError(f"module={module!r} is not a module of {root}: the key would cover no code")
    if files is None:
        files = data_files()
    elif isinstance(files, (str, Path)):
        raise TypeError("files must be a list of paths, not a single path")
    files = sorted(Path(f) for f in files)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"files not found: {missing[:3]}")
    h = hashlib.sha256(json.dumps(canonical(params), sort_keys=True).encode())
    for name, path in closure.items():
        h.update(name.encode() + b"\0" + path.read_bytes())
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    h.update(torch.__version__.encode())
    return h.hexdigest()[:20]


def _entry_path(name: str, key: str) -> Path | None:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ValueError(f"name must be a plain file name (letters, digits, '_', '-', '.'; no path), "
                         f"got {name!r}")
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise ValueError(f"key must be a hex digest (cache_key(...)), got {key!r}")
    folder = cache_dir()
    return None if folder is None else folder / f"{name}-{key}.safetensors"


def _read(path: Path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["meta"])
        return {k: f.get_tensor(k) for k in f.keys()}, meta


def _write(path: Path, tensors: dict, meta: dict) -> None:
    from safetensors.torch import save_file

    text = json.dumps(meta)  # fails before anything is written if meta is not JSON-able
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"meta": text}))


def load_or_compute(name: str, key: str, compute):
    """Return ``(tensors, meta, hit)`` for cache entry ``<name>-<key>``.

    ``compute()`` must return ``(dict[str, Tensor], dict)`` (JSON-able meta); it runs only
    on a miss, and its result is stored. ``name`` must be a plain file name. If the entry
    cannot be stored (read-only folder, a file where the folder should be, meta not
    JSON-able), a ``RuntimeWarning`` says why and the computed result is returned anyway.
    """
    path = _entry_path(name, key)
    if path is not None and path.is_file():
        try:
            tensors, meta = _read(path)
            return tensors, meta, True
        except Exception:  # a corrupt entry is recomputed, never trusted
            path.unlink(missing_ok=True)
    result = compute()
    if (not isinstance(result, tuple) or len(result) != 2 or not isinstance(result[0], dict)
            or not isinstance(result[1], dict)
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in result[0].items())):
        raise TypeError("compute() must return (dict of name → tensor, dict of JSON-able meta), got "
                        f"{type(result).__name__}")
    tensors, meta = result
    if path is not None:
        try:
            _write(path, tensors, meta)
        except (OSError, TypeError, ValueError) as e:
            warnings.warn(f"could not store cache entry {path} ({type(e).__name__}: {e}); the result is "
                          "returned but not cached", RuntimeWarning, stacklevel=2)
    return tensors, meta, False


def cached_fit(name: str, params: dict, model: torch.nn.Module, fit, *, module: str | None = None,
               use_cache: bool = True) -> tuple[dict, bool]:
    """Train ``model`` with ``fit()`` or load what a previous identical run trained.

    ``fit()`` trains ``model`` in place and returns JSON-able measurements (``meta``). On a
    miss the trainable parameters (``requires_grad``) and ``meta`` are stored under
    ``cache_key(params, module)``, ``module`` defaulting to the module that defines ``fit``;
    on a hit they are copied into ``model``, which must have the same trainable parameters.
    Returns ``(meta, hit)``; ``model`` is left in eval mode.
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(use_cache, bool):
        raise TypeError(f"use_cache must be True or False, got {use_cache!r}")
    module = module or fit.__module__

    def compute():
        meta = fit()
        return {k: v for k, v in model.named_parameters() if v.requires_grad}, meta

    if use_cache:
        tensors, meta, hit = load_or_compute(name, cache_key(params, module), compute)
    else:
        (tensors, meta), hit = compute(), False
    if hit:
        params_now = dict(model.named_parameters())
        wanted = {k for k, p in params_now.items() if p.requires_grad}
        if set(tensors) != wanted:
            raise RuntimeError(f"cache entry {name} does not match the model's trainable parameters "
                               f"(differ: {sorted(set(tensors) ^ wanted)[:3]})")
        wrong = [k for k, t in tensors.items() if t.shape != params_now[k].shape]
        if wrong:
            k = wrong[0]
            raise RuntimeError(f"cache entry {name} holds {k} of shape {tuple(tensors[k].shape)}, the "
                               f"model's is {tuple(params_now[k].shape)}")
        with torch.no_grad():
            for k, t in tensors.items():
                params_now[k].copy_(t.to(params_now[k].device, params_now[k].dtype))
    model.eval()
    return meta, hit

