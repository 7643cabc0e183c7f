"""data/prepare.py rebuilds the committed files byte for byte from the vaderSentiment sdist."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_convert_adds_a_header_and_drops_carriage_returns(script):
    prep = script("data/prepare.py")
    out = prep.convert(b"1\t2.5\tGood movie\r\n2\t-1\tBad\r\n")
    assert out == b"id\tvalence\ttext\n1\t2.5\tGood movie\n2\t-1\tBad\n"


def test_wrong_checksum_is_refused(tmp_path, script):
    prep = script("data/prepare.py")
    fake = tmp_path / prep.SDIST
    fake.write_bytes(b"not the sdist")
    with pytest.raises(ValueError, match="sha256"):
        prep.build(fake, tmp_path / "out")


def test_rebuild_is_byte_identical(tmp_path, script):
    prep = script("data/prepare.py")
    try:
        sdist = prep.fetch_sdist(tmp_path)
    except (subprocess.CalledProcessError, OSError) as e:
        pytest.skip(f"vaderSentiment==3.3.2 sdist could not be fetched from PyPI ({e}); "
                    "prepare.py --check needs the package registry")
    cmd = [sys.executable, str(ROOT / "data" / "prepare.py"), "--sdist", str(sdist), "--check"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "identical to the committed files" in result.stdout
    assert "total 23703" in result.stdout
