"""Rebuild the committed sentiment snippets (data/*.tsv) from the vaderSentiment 3.3.2 sdist.

    python data/prepare.py                    # download the sdist from PyPI (pip download)
    python data/prepare.py --sdist FILE.tar.gz  # use a local copy
    python data/prepare.py --check             # rebuild into a temp dir and compare bytes

The sdist's sha256 is verified before anything is read. Output: one UTF-8 TSV per domain
(``id<TAB>valence<TAB>text``, LF line ends, rows in source order, valence string verbatim).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "vaderSentiment-3.3.2.tar.gz"
SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
SOURCES = {
    "movie": "movieReviewSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
}
HERE = Path(__file__).resolve().parent


def fetch_sdist(dest: Path) -> Path:
    """Download the sdist with pip (PyPI only; no model or dataset hub)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         "vaderSentiment==3.3.2", "-d", str(dest), "-q"],
        check=True,
    )
    return dest / SDIST


def verify(path: Path) -> bytes:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise ValueError(f"{path}: sha256 {digest} != expected {SHA256}")
    return data


def convert(raw: bytes) -> bytes:
    """Ground-truth file (CRLF, id TAB valence TAB text) -> our TSV bytes."""
    lines = [ln for ln in raw.decode("utf-8").split("\r\n") if ln]
    out = ["id\tvalence\ttext"]
    for ln in lines:
        rid, valence, text = ln.split("\t")
        float(valence)  # must parse
        out.append(f"{rid}\t{valence}\t{text}")
    return ("\n".join(out) + "\n").encode("utf-8")


def build(sdist: Path, out_dir: Path) -> dict[str, int]:
    outer = tarfile.open(fileobj=io.BytesIO(verify(sdist)), mode="r:gz")
    inner_bytes = outer.extractfile(INNER).read()
    inner = tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz")
    counts = {}
    out_dir.mkdir(parents=True, exist_ok=True)
    for domain, name in SOURCES.items():
        data = convert(inner.extractfile(f"hutto_ICWSM_2014/{name}").read())
        target = out_dir / f"{domain}.tsv"
        tmp = target.with_suffix(".tsv.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)  # atomic
        counts[domain] = data.count(b"\n") - 1
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sdist", type=Path, help="local vaderSentiment-3.3.2.tar.gz")
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: data/)")
    ap.add_argument("--check", action="store_true", help="rebuild in a temp dir, compare with data/")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or fetch_sdist(Path(tmp))
        out = Path(tmp) / "out" if args.check else args.out
        counts = build(sdist, out)
        print("rows:", counts, "total", sum(counts.values()))
        if args.check:
            diff = [d for d in SOURCES if (out / f"{d}.tsv").read_bytes() != (HERE / f"{d}.tsv").read_bytes()]
            if diff:
                print("DIFFERENT:", diff)
                return 1
            print("identical to the committed files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
