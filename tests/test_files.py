"""minilora.files: atomic writes of a file and of a folder of files."""

import os
import stat

import pytest

from minilora.files import atomic_folder, atomic_write, current_umask, write_text_atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def leftovers(folder):
    """Temp files or folders the atomic writers leave beside their targets (names start with '.')."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


# --- atomic_write -----------------------------------------------------------------------------------

def test_atomic_write_writes_the_file_and_returns_its_path(tmp_path):
    out = atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("new"))
    assert out == tmp_path / "a.txt" and out.read_text() == "new"


def test_atomic_write_replaces_an_existing_file(tmp_path):
    (tmp_path / "a.txt").write_text("old")
    atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("new"))
    assert (tmp_path / "a.txt").read_text() == "new"


def test_atomic_write_creates_the_parent_folder(tmp_path):
    atomic_write(tmp_path / "x" / "y" / "a.txt", lambda tmp: tmp.write_text("new"))
    assert (tmp_path / "x" / "y" / "a.txt").read_text() == "new"


def test_atomic_write_leaves_no_temp_file(tmp_path):
    atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("new"))
    assert leftovers(tmp_path) == [] and [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def failing_write(tmp):
    tmp.write_text("half writ")
    raise RuntimeError("disk full")


def test_a_failing_write_leaves_the_old_file(tmp_path):
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(tmp_path / "a.txt", failing_write)
    assert (tmp_path / "a.txt").read_text() == "old"


def test_a_failing_write_leaves_no_temp_file(tmp_path):
    (tmp_path / "a.txt").write_text("old")
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "a.txt", failing_write)
    assert leftovers(tmp_path) == []


def test_a_failing_first_write_creates_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "a.txt", failing_write)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_permissions_follow_the_umask(tmp_path, umask_022):
    atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("new"))
    assert mode(tmp_path / "a.txt") == 0o644  # not mkstemp's private 0o600


def test_atomic_write_permissions_follow_a_stricter_umask(tmp_path):
    old = os.umask(0o077)
    try:
        atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("new"))
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.txt") == 0o600


def test_write_text_atomic_writes_utf8(tmp_path):
    write_text_atomic(tmp_path / "a.txt", "ΔW ≈ B·A\n")
    assert (tmp_path / "a.txt").read_bytes() == "ΔW ≈ B·A\n".encode()


def test_current_umask_reads_without_changing_it(umask_022):
    assert current_umask() == 0o022 and current_umask() == 0o022


# --- atomic_folder ----------------------------------------------------------------------------------

@pytest.fixture
def old_folder(tmp_path):
    """A folder with a.json (to be replaced) and notes.txt, sub/ (a user's unrelated files)."""
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "a.json").write_text("old a")
    (folder / "notes.txt").write_text("mine")
    (folder / "sub").mkdir()
    (folder / "sub" / "x.txt").write_text("x")
    return folder


def test_atomic_folder_writes_a_new_folder(tmp_path):
    with atomic_folder(tmp_path / "new") as tmp:
        (tmp / "a.json").write_text("a")
        (tmp / "b.bin").write_bytes(b"b")
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["a.json", "b.bin"]


EVERYTHING = ("a.json", "notes.txt", "sub", "b.json")


def test_atomic_folder_replaces_the_files_written(old_folder):
    with atomic_folder(old_folder, replaces=EVERYTHING) as tmp:
        (tmp / "a.json").write_text("new a")
        (tmp / "b.json").write_text("new b")
    assert (old_folder / "a.json").read_text() == "new a" and (old_folder / "b.json").read_text() == "new b"


def test_atomic_folder_refuses_a_folder_holding_files_it_may_not_replace(old_folder):
    with pytest.raises(ValueError, match=r"holds other files \['notes.txt', 'sub'\]"):
        with atomic_folder(old_folder, replaces=("a.json",)) as tmp:
            (tmp / "a.json").write_text("new a")
    assert (old_folder / "notes.txt").read_text() == "mine"
    assert (old_folder / "a.json").read_text() == "old a"
    assert leftovers(old_folder.parent) == []


@pytest.mark.parametrize("where", ["/", ".", ".."])
def test_atomic_folder_refuses_the_root_and_the_current_folder(where):
    with pytest.raises(ValueError, match="folder of its own"):
        with atomic_folder(where, replaces=None):
            pass


def test_atomic_folder_refuses_a_symlink(tmp_path, old_folder):
    link = tmp_path / "link"
    link.symlink_to(old_folder)
    with pytest.raises(ValueError, match="symbolic link"):
        with atomic_folder(link, replaces=None):
            pass


def test_atomic_folder_does_not_write_into_the_old_folder_before_the_end(old_folder):
    with atomic_folder(old_folder, replaces=EVERYTHING) as tmp:
        (tmp / "a.json").write_text("new a")
        assert tmp != old_folder
        assert (old_folder / "a.json").read_text() == "old a"  # old content until the swap


def test_atomic_folder_leaves_nothing_beside_the_target(old_folder):
    with atomic_folder(old_folder, replaces=EVERYTHING) as tmp:
        (tmp / "a.json").write_text("new a")
    assert leftovers(old_folder.parent) == [] and [p.name for p in old_folder.parent.iterdir()] == ["adapter"]


def test_a_failing_write_inside_atomic_folder_leaves_the_old_folder(old_folder):
    before = {p.relative_to(old_folder): p.read_text() for p in old_folder.rglob("*") if p.is_file()}
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_folder(old_folder, replaces=EVERYTHING) as tmp:
            (tmp / "a.json").write_text("new a")
            raise RuntimeError("disk full")
    after = {p.relative_to(old_folder): p.read_text() for p in old_folder.rglob("*") if p.is_file()}
    assert after == before


def test_a_failing_write_inside_atomic_folder_leaves_no_temp_folder(old_folder):
    with pytest.raises(RuntimeError):
        with atomic_folder(old_folder, replaces=EVERYTHING) as tmp:
            (tmp / "a.json").write_text("new a")
            raise RuntimeError("disk full")
    assert leftovers(old_folder.parent) == []


def test_atomic_folder_rejects_a_file_path(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="path must be a folder"):
        with atomic_folder(tmp_path / "file"):
            pass


def test_atomic_folder_permissions_follow_the_umask(tmp_path, umask_022):
    with atomic_folder(tmp_path / "new") as tmp:
        (tmp / "a.json").write_text("a")
    assert mode(tmp_path / "new") == 0o755 and mode(tmp_path / "new" / "a.json") == 0o644
