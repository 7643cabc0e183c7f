"""minilora.course.gpu_record: the recorded output of scripts/gpu_check.py inside docs/gpu.md."""

from pathlib import Path

import pytest

from minilora.course import gpu_record

ROOT = Path(__file__).resolve().parent.parent
RECORD = {"date": "2026-11-27", "card": "Test Card", "torch": "2.x", "cuda_runtime": 12040,
          "rows": [{"check": "a | b", "result": "PASS", "detail": "x --> y <!-- z", "values": {"v": 1.5}}]}


@pytest.fixture
def page(tmp_path):
    """A docs page whose record block says "not recorded", with text before and after it."""
    page = tmp_path / "gpu.md"
    block = f"{gpu_record.START}\n{gpu_record.NOT_RECORDED}\n{gpu_record.END}"
    page.write_text(f"# GPU\nintro\n\n{block}\nafter\n")
    return page


def test_a_page_without_a_record_reads_as_none(page):
    assert gpu_record.read_record(page) is None


def test_write_record_keeps_the_text_around_the_block(page):
    gpu_record.write_record(page, RECORD)
    text = page.read_text()
    assert text.startswith("# GPU\nintro\n") and text.endswith("after\n") and "Test Card" in text


def test_a_written_record_reads_back_equal(page):
    gpu_record.write_record(page, RECORD)
    assert gpu_record.read_record(page) == RECORD


def test_the_table_escapes_pipes_in_cells(page):
    gpu_record.write_record(page, RECORD)
    assert "| a \\| b | PASS |" in page.read_text()


def test_format_record_requires_a_card():
    with pytest.raises(ValueError, match="card"):
        gpu_record.format_record({"date": "x", "rows": []})


def test_committed_docs_page_parses():
    record = gpu_record.read_record(ROOT / "docs" / "gpu.md")
    assert record is None or {"date", "card", "rows"} <= set(record)


def test_default_record_path_is_this_checkouts_page():
    assert gpu_record.default_record_path() == ROOT / "docs" / "gpu.md"


def test_read_record_reads_the_default_page():
    assert gpu_record.read_record() == gpu_record.read_record(ROOT / "docs" / "gpu.md")


def test_a_missing_page_is_named_in_the_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="docs/gpu.md"):
        gpu_record.read_record(tmp_path / "missing.md")
