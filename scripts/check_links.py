"""Check every internal link and image of a static site (what `make site` runs after building).

    python scripts/check_links.py site/

For each HTML file: every ``href`` / ``src`` that is not external (``http:``, ``https:``,
``mailto:``, ``data:``, ``javascript:``, ``//``) must name a file inside the site, and a
``#fragment`` must name an element ``id`` (or ``<a name>``) of the target page, as given or
percent-decoded (a browser tries both). ``data:`` images
must be non-empty. No network is used. Exit 1 and list the problems if there are any.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

EXTERNAL = ("http:", "https:", "mailto:", "javascript:", "//", "tel:")


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs: list[tuple[str, str]] = []   # (tag.attr, value)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name in ("id",) or (tag == "a" and name == "name"):
                self.ids.add(value)
            if (name == "href" and tag in ("a", "link", "area")) or (name == "src" and tag in (
                    "img", "script", "iframe", "source", "video", "audio", "embed")):
                self.refs.append((f"{tag}.{name}", value))


def fragment_forms(fragment: str) -> set[str]:
    """The ids a browser would match a ``#fragment`` against: the URL parser percent-encodes it
    (non-ASCII, space, quotes, <, >, `), then the page is searched for it as encoded and decoded."""
    encoded = "".join(c if 0x21 <= ord(c) < 0x7F and c not in '"<>`' else quote(c) for c in fragment)
    return {fragment, encoded, unquote(encoded)}


def parse(path: Path) -> _Collect:
    c = _Collect()
    c.feed(path.read_text(errors="replace"))
    return c


def check_site(site: Path) -> list[str]:
    """Problems found in ``site`` (empty: every internal link and image resolves)."""
    site = site.resolve()
    pages = {p.resolve(): parse(p) for p in sorted(site.rglob("*.html"))}
    if not pages:
        return [f"{site}: no HTML page"]
    problems = []
    for page, parsed in pages.items():
        where = page.relative_to(site)
        for what, ref in parsed.refs:
            ref = ref.strip()
            if ref.lower().startswith(EXTERNAL):
                continue
            if ref.lower().startswith("data:"):
                if "," not in ref or not ref.split(",", 1)[1].strip():
                    problems.append(f"{where}: empty data: URI in {what}")
                continue
            parts = urlsplit(ref)
            target = page if not parts.path else (page.parent / unquote(parts.path)).resolve()
            if site not in target.parents and target != site:
                problems.append(f"{where}: {what} {ref!r} points outside the site")
                continue
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                problems.append(f"{where}: {what} {ref!r}: no such file")
                continue
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else parse(target).ids
                if not ids & fragment_forms(parts.fragment):
                    problems.append(f"{where}: {what} {ref!r}: no element with id {parts.fragment!r}")
    return problems


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    site = Path(argv[0] if argv else "site")
    problems = check_site(site)
    pages = len(list(site.rglob("*.html")))
    for p in problems:
        print(f"broken: {p}")
    print(f"links: {pages} pages checked, {len(problems)} broken")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
