"""Atomic writes: a file, or a folder of files, appears whole or not at all.

    atomic_write(path, lambda tmp: tmp.write_text("..."))      # one file
    with atomic_folder(path) as tmp:                            # several files as one unit
        (tmp / "a.json").write_text(...); save_file(..., tmp / "b.safetensors")

Both write next to the target (same file system) and then ``os.replace`` the result into
place, so a crash or an exception leaves the old content (or nothing) and never a half
written file. New files and folders get the permissions ``open()`` would give them
(0666 / 0777 minus the process umask), not ``mkstemp``'s private 0600.

Replacing a folder swaps the new one in as a whole (one atomic ``renameat2`` exchange on
Linux; elsewhere two renames, between which a reader sees no folder): a reader sees the old
folder or the new one, never a mix of old and new files.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import stat
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
    file is removed. The parent folder is created if needed. A replaced file keeps its
    permissions; a new one gets 0666 minus the umask. Returns ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path must be a file, {path} is a folder")
    mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o666 & ~current_umask()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text_atomic(path, text: str) -> Path:
    """``atomic_write`` of a UTF-8 text."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


RENAME_EXCHANGE = 2  # linux/fs.h: swap two paths atomically (renameat2)
AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap the folders ``a`` and ``b`` (Linux ``renameat2(..., RENAME_EXCHANGE)``).
    Returns False where the system or file system does not offer it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    ok = renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0
    return ok


def _swap_in(tmp: Path, path: Path) -> None:
    """Put the folder ``tmp`` at ``path``, replacing the folder there (atomically where the
    system allows; else two renames, rolled back if the second fails). Removes the old one."""
    if not path.exists():
        os.replace(tmp, path)
        return
    if _exchange(tmp, path):  # now tmp holds the old folder
        shutil.rmtree(tmp, ignore_errors=True)
        return
    aside = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
    try:
        os.replace(path, aside / "old")
        try:
            os.replace(tmp, path)
        except OSError:
            os.replace(aside / "old", path)  # roll back: the old folder is where it was
            raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)


@contextlib.contextmanager
def atomic_folder(path, replaces=()):
    """Yield an empty temp folder beside ``path``; on a clean exit it becomes ``path``.

    An existing folder at ``path`` is swapped out as a whole (atomically on Linux, where
    ``renameat2`` exchanges the two; elsewhere by two renames, the first undone if the
    second fails). So that nothing is lost, an existing folder may only hold files named in
    ``replaces`` (default: none, so it must be empty; ``None`` allows anything, explicitly);
    otherwise ValueError lists the others and nothing changes. ``path`` may not be a file, a
    symbolic link, the file-system root, the current folder or one of its parents. On an
    exception inside the block nothing changes.
    """
    path = Path(path).expanduser()
    if path.is_symlink():
        raise ValueError(f"path must not be a symbolic link, {path} is one (pass the folder it points to)")
    if path.exists() and not path.is_dir():
        raise ValueError(f"path must be a folder, {path} is a file")
    resolved, cwd = path.resolve(), Path.cwd().resolve()
    if resolved == resolved.parent or resolved == cwd or resolved in cwd.parents:
        raise ValueError(f"path must be a folder of its own, not {path} (the current folder, one of its "
                         "parents or the file-system root)")
    if replaces is not None and path.is_dir():
        others = sorted(e.name for e in path.iterdir() if e.name not in set(replaces))
        if others:
            raise ValueError(f"path {path} holds other files {others[:5]}: it would be replaced as a whole, "
                             f"so save into an empty folder or one holding only {sorted(replaces)}")
    mask = current_umask()
    mode = stat.S_IMODE(path.stat().st_mode) if path.is_dir() else 0o777 & ~mask
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        for f in tmp.rglob("*"):  # only what the block wrote: never files outside tmp
            if not f.is_symlink():
                os.chmod(f, (0o777 if f.is_dir() else 0o666) & ~mask)
        os.chmod(tmp, mode)
        _swap_in(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
