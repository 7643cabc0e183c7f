"""The recorded output of ``scripts/gpu_check.py`` in ``docs/gpu.md``: write it, read it back.

The record sits between two HTML comments so the page keeps its prose around it; inside,
a JSON comment carries the exact values and a Markdown table shows them:

    <!-- gpu-check:start -->
    <!-- gpu-check-json: {"date": ..., "card": ..., "rows": [{"check", "result", "detail"}]} -->
    Recorded 2026-.. on <card> ...
    | check | result | detail |
    <!-- gpu-check:end -->

Notebooks read it with ``read_record`` and show it labelled as recorded (date, card); with
no run recorded they say so instead of showing numbers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..files import write_text_atomic

START, END = "<!-- gpu-check:start -->", "<!-- gpu-check:end -->"
JSON_TAG = "<!-- gpu-check-json: "
NOT_RECORDED = "No GPU run has been recorded yet."


def markdown_table(rows: list[dict]) -> str:
    """``| check | result | detail |`` table of ``rows`` (pipes in cells are escaped)."""
    def cell(v):
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| check | result | detail |", "|---|---|---|"]
    lines += [f"| {cell(r['check'])} | {cell(r['result'])} | {cell(r['detail'])} |" for r in rows]
    return "\n".join(lines)


def format_record(record: dict) -> str:
    """The block (markers included) for ``record`` = {date, card, torch, cuda_runtime, rows, ...}."""
    if not isinstance(record, dict):
        raise TypeError(f"record must be a dict, got {type(record).__name__}")
    for key in ("date", "card", "rows"):
        if key not in record:
            raise ValueError(f"record needs a {key!r} entry")
    for i, row in enumerate(record["rows"]):
        missing = [k for k in ("check", "result", "detail") if not isinstance(row, dict) or k not in row]
        if missing:
            raise ValueError(f"record['rows'][{i}] needs {missing}")
    command = record.get("command", "scripts/gpu_check.py")
    head = (f"Recorded {record['date']} on **{record['card']}** (torch {record.get('torch', '?')}, "
            f"CUDA runtime {record.get('cuda_runtime', '?')}), by `{command}`.")
    return "\n".join([START, JSON_TAG + _json(record) + " -->", head, "",
                      markdown_table(record["rows"]), END])


def _json(record: dict) -> str:
    # ">" only occurs inside JSON strings, where \u003e means the same: no "-->" can end the comment
    try:
        text = json.dumps(record, sort_keys=True, allow_nan=False)
    except ValueError:
        raise ValueError("record holds NaN or inf, which is not valid JSON: record None instead") from None
    return text.replace(">", "\\u003e")


def _split(text: str) -> tuple[str, str, str]:
    i, j = text.find(START), text.find(END)
    if i < 0 or j < i:
        raise ValueError(f"no {START} ... {END} block found")
    return text[:i], text[i:j + len(END)], text[j + len(END):]


def write_record(path, record: dict) -> None:
    """Replace the record block of the page at ``path`` (atomically: temp file + os.replace)."""
    path = Path(path)
    before, _, after = _split(path.read_text(encoding="utf-8"))
    write_text_atomic(path, before + format_record(record) + after)


def parse_record(text: str) -> dict | None:
    """The record dict in ``text`` (a docs/gpu.md page), or None when no run is recorded."""
    if not isinstance(text, str):
        raise TypeError(f"text must be the page's text (str), got {type(text).__name__}")
    _, block, _ = _split(text)
    match = re.search(re.escape(JSON_TAG) + r"(.*?) -->", block)
    if match is None:
        return None
    try:
        return json.loads(match.group(1))
    except json.JSONDecodeError as e:
        raise ValueError(f"the recorded GPU run's JSON is damaged ({e}); re-run scripts/gpu_check.py "
                         "--record") from None


def default_record_path() -> Path:
    """``docs/gpu.md`` of the source tree minilora was imported from."""
    return Path(__file__).resolve().parents[2] / "docs" / "gpu.md"


def read_record(path=None) -> dict | None:
    """``parse_record`` of the file at ``path`` (default: ``default_record_path()``)."""
    path = default_record_path() if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the GPU record lives in docs/gpu.md of a source "
                                "checkout; pass its path")
    return parse_record(path.read_text(encoding="utf-8"))
