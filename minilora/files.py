"""Atomic writes: a file, or a folder of files, appears whole or not at all.

    atomic_write(path, lambda tmp: tmp.write_text("..."))      # one file
    with atomic_folder(path) as tmp:                            # several files as one unit
        (tmp / "a.json").write_text(...); save_file(..., tmp / "b.safetensors")

Both write next to the target (same file system) and then ``os.replace`` the result into
place, so a crash or an exception leaves the old content (or nothing) and never a half
written file. New files and folders get the permissions ``open()`` would give them
(0666 / 0777 minus the process umask), not ``mkstemp``'s private 0600.

Folder replacement is two renames (old → aside, new → path) followed by deleting the old
one: between the two renames the target does not exist, so a reader sees the old folder,
the new folder or nothing — never a mix of old and new files.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` on a fresh temp file beside ``path``, then rename it to ``path``.

    ``write`` receives a ``pathlib.Path``; if it raises, ``path`` is untouched and the temp
    file is removed. The parent folder is created if needed. Returns ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path, text: str) -> Path:
    """``atomic_write`` of a UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


@contextlib.contextmanager
def atomic_folder(path):
    """Yield an empty temp folder beside ``path``; on a clean exit it replaces ``path``.

    The files written into the temp folder replace those of ``path``; other entries of an
    existing folder are kept (copied across before the swap), so unrelated files a user
    keeps there are not lost. On an exception nothing changes. ``path`` must not be an
    existing file.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"path must be a folder, {path} is a file")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.is_dir():
            for entry in path.iterdir():
                target = tmp / entry.name
                if not target.exists():
                    if entry.is_dir() and not entry.is_symlink():
                        shutil.copytree(entry, target, symlinks=True)
                    else:
                        shutil.copy2(entry, target, follow_symlinks=False)
        mask = current_umask()
        os.chmod(tmp, 0o777 & ~mask)
        for f in tmp.rglob("*"):
            os.chmod(f, (0o777 if f.is_dir() else 0o666) & ~mask)
        aside = None
        if path.exists():
            aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, aside / "old")
        os.replace(tmp, path)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
