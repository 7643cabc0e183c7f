"""A small on-disk cache for expensive shared results (e.g. the full fine-tune that
notebooks 00, 01, 02 and 04 all use).

An entry is keyed by everything that determines it: the caller's parameters, the bytes of
the minilora source files and data files involved, and the torch version. A notebook that
finds no entry recomputes, so every notebook still runs on its own. Entries are written
atomically (temp file + ``os.replace``), so an interrupted run never leaves a half file.
Location: ``$MINILORA_CACHE`` or ``~/.cache/minilora``; ``MINILORA_CACHE=off`` disables it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch


def cache_dir() -> Path | None:
    """The cache folder, or None when disabled with ``MINILORA_CACHE=off``."""
    env = os.environ.get("MINILORA_CACHE", "")
    if env.lower() in ("off", "0", "none"):
        return None
    return Path(env).expanduser() if env else Path.home() / ".cache" / "minilora"


def cache_key(params: dict, files=()) -> str:
    """sha256 over the JSON of ``params``, the bytes of ``files`` and the torch version."""
    h = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for f in sorted(str(f) for f in files):
        h.update(Path(f).read_bytes())
    h.update(torch.__version__.encode())
    return h.hexdigest()[:20]


def _atomic_save(tensors: dict, meta: dict, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp,
                  metadata={"meta": json.dumps(meta)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_or_compute(name: str, key: str, compute):
    """Return ``(tensors, meta, hit)`` for cache entry ``name-key``.

    ``compute()`` must return ``(dict[str, Tensor], dict)`` (JSON-able meta); it runs only
    on a miss, and its result is stored.
    """
    folder = cache_dir()
    path = None if folder is None else folder / f"{name}-{key}.safetensors"
    if path is not None and path.is_file():
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads(f.metadata()["meta"])
                return {k: f.get_tensor(k) for k in f.keys()}, meta, True
        except Exception:  # a corrupt entry is recomputed, never trusted
            path.unlink(missing_ok=True)
    tensors, meta = compute()
    if path is not None:
        _atomic_save(tensors, meta, path)
    return tensors, meta, False
