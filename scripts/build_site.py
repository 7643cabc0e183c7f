"""The course as static pages (`make site`): every notebook with its committed outputs, in site/.

    python scripts/build_site.py [--out site]

* ``index.html`` is the course map: notebook → idea → seed section → what it measures → the
  headline verdict. The map's data live in one place, ``notebooks/course.json``; the headline is
  read from the executed notebook itself: the text output of its code cell tagged ``headline``
  ("—" when a notebook has none yet), with a link to its *What we measured* section.
* ``<notebook>.html`` is nbconvert's lab template with previous / course map / next links.
  Widgets are drawn from the widget state saved in the notebook (scripts/run_notebooks.py): the
  controls as they were, disabled, and the figure of their Output widget — no kernel, no
  JavaScript, nothing fetched.
* ``running.html`` says how to run the course (`make lab`).

Nothing is downloaded (MathJax, for equations, is the one script a page asks a CDN for; without
it the LaTeX shows as text). scripts/check_links.py checks every internal link and image after.
"""

from __future__ import annotations

import argparse
import base64
import copy
import html
import json
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
TEMPLATES = Path(__file__).resolve().parent / "site_templates"


# ---------------------------------------------------------------- the course map
def topic(stem: str) -> str:
    """A notebook's name without its number: ``06_paged_optimizer`` → ``paged_optimizer``,
    ``02b_lora_ablations`` → ``lora_ablations`` (a letter after the number splits a lesson)."""
    return re.sub(r"^\d+[a-z]?_", "", stem)


def course_map(folder: Path) -> list[dict]:
    """course.json's entries joined with the notebooks in ``folder`` (by name without number),
    in course order; ``path`` is None for a planned notebook, notebooks missing from course.json
    get "—" fields."""
    entries = json.loads((folder / "course.json").read_text())["notebooks"]
    files = {topic(p.stem): p for p in sorted(folder.glob("*.ipynb"))}
    rows = []
    for e in entries:
        path = files.pop(topic(e["notebook"]), None)
        rows.append(dict(e, stem=path.stem if path else e["notebook"], path=path))
    for path in files.values():
        rows.append({"notebook": path.stem, "idea": "—", "seed": "—", "measures": "—", "stem": path.stem,
                     "path": path})
    return sorted(rows, key=lambda r: r["stem"])


def output_text(output: dict) -> str:
    if output.get("output_type") == "stream":
        return output.get("text", "") if output.get("name") == "stdout" else ""
    data = output.get("data", {})
    return data.get("text/markdown") or data.get("text/plain") or ""


def headline(nb) -> str:
    """The text output of the code cell tagged ``headline``; "" when there is none."""
    for cell in nb.cells:
        if cell.cell_type == "code" and "headline" in cell.get("metadata", {}).get("tags", []):
            text = "".join(output_text(o) for o in cell.get("outputs", [])).strip()
            return text[:600]
    return ""


def title(nb, fallback: str) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+)$", cell.source, flags=re.M)
            if m:
                return m.group(1).strip()
    return fallback


def anchor(text: str) -> str:
    """The id nbconvert gives a heading (spaces → '-')."""
    return re.sub(r"\s+", "-", text.strip())


def section_anchor(nb, heading: str = "What we measured") -> str | None:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for m in re.finditer(r"^#+\s+(.+?)\s*$", cell.source, flags=re.M):
                if m.group(1).lower().startswith(heading.lower()):
                    return anchor(m.group(1))
    return None


def inline(text: str) -> str:
    """Escape, then `code` → <code>code</code> (the markdown the course map uses)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


# ---------------------------------------------------------------- widgets as static HTML
def _labels(s: dict) -> list[str]:
    return [str(x) for x in s.get("_options_labels", [])]


def render_widget(model_id: str, state: dict, seen: frozenset = frozenset()) -> str:
    """Static HTML for one saved widget model (and its children): disabled controls showing the
    saved values, HTML as it was, an Output widget's outputs (its figure)."""
    model = state.get(model_id)
    if model is None or model_id in seen:
        return '<span class="mw-missing">[widget state not saved]</span>'
    seen = seen | {model_id}
    name, s = model["model_name"], model.get("state", {})

    def child(ref: str) -> str:
        return render_widget(ref.removeprefix("IPY_MODEL_"), state, seen)

    desc = html.escape(str(s.get("description") or ""))
    label = f'<label class="mw-label">{desc}</label>' if desc else ""
    if name in ("VBoxModel", "BoxModel", "GridBoxModel", "AccordionModel", "TabModel", "StackModel"):
        return f'<div class="mw-vbox">{"".join(child(c) for c in s.get("children", []))}</div>'
    if name == "HBoxModel":
        return f'<div class="mw-hbox">{"".join(child(c) for c in s.get("children", []))}</div>'
    if name in ("DropdownModel", "SelectModel"):
        idx = s.get("index")
        opts = "".join(f'<option{" selected" if i == idx else ""}>{html.escape(t)}</option>'
                       for i, t in enumerate(_labels(s)))
        blank = '<option selected></option>' if idx is None else ""
        return f'<div class="mw-control">{label}<select disabled>{blank}{opts}</select></div>'
    if name in ("IntSliderModel", "FloatSliderModel", "SelectionSliderModel"):
        if name == "SelectionSliderModel":
            lo, hi, step, value = 0, max(len(_labels(s)) - 1, 0), 1, s.get("index") or 0
            readout = _labels(s)[value] if _labels(s) else ""
        else:
            lo, hi, step, value = s.get("min", 0), s.get("max", 100), s.get("step", 1), s.get("value", 0)
            readout = value
        return (f'<div class="mw-control">{label}<input type="range" disabled min="{lo}" max="{hi}" '
                f'step="{step}" value="{value}">'
                f'<span class="mw-readout">{html.escape(str(readout))}</span></div>')
    if name == "ToggleButtonsModel":
        idx = s.get("index")
        active = ' class="mw-active"'
        buttons = "".join(f'<button disabled{active if i == idx else ""}>{html.escape(t)}</button>'
                          for i, t in enumerate(_labels(s)))
        return f'<div class="mw-control">{label}<span class="mw-toggles">{buttons}</span></div>'
    if name in ("CheckboxModel", "ToggleButtonModel"):
        checked = " checked" if s.get("value") else ""
        return (f'<div class="mw-control"><label class="mw-check"><input type="checkbox" disabled{checked}> '
                f'{html.escape(str(s.get("description", "")))}</label></div>')
    if name in ("TextModel", "TextareaModel", "IntTextModel", "FloatTextModel"):
        return (f'<div class="mw-control">{label}<input type="text" disabled '
                f'value="{html.escape(str(s.get("value", "")))}"></div>')
    if name in ("HTMLModel", "HTMLMathModel"):
        return f'<div class="mw-html">{label}{s.get("value", "")}</div>'
    if name == "LabelModel":
        return f'<div class="mw-html">{html.escape(str(s.get("value", "")))}</div>'
    if name == "OutputModel":
        return f'<div class="mw-output">{"".join(render_output(o) for o in s.get("outputs", []))}</div>'
    if name == "ImageModel":
        return f'<img alt="" src="data:image/{s.get("format", "png")};base64,{s.get("value", "")}">'
    return f'<span class="mw-missing">[{html.escape(name)}]</span>'


def render_output(o: dict) -> str:
    if o.get("output_type") == "stream":
        return f"<pre>{html.escape(o.get('text', ''))}</pre>"
    data = o.get("data", {})
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            b64 = data[mime] if isinstance(data[mime], str) else base64.b64encode(data[mime]).decode()
            return f'<img alt="figure" src="data:{mime};base64,{b64.strip()}">'
    if "image/svg+xml" in data:
        return data["image/svg+xml"]
    if "text/html" in data:
        return data["text/html"]
    return f"<pre>{html.escape(data.get('text/plain', ''))}</pre>"


def static_widgets(nb) -> int:
    """Replace every widget output of ``nb`` (in place) by its static HTML; return how many."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    n = 0
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            view = o.get("data", {}).get(WIDGET_VIEW)
            if view:
                body = render_widget(view["model_id"], state)
                o["data"] = {"text/html": f'<div class="minilora-widget" title="a snapshot: run the notebook '
                                          f'in JupyterLab (make lab) to use the controls">{body}</div>'}
                n += 1
    nb.metadata.pop("widgets", None)
    return n


# ---------------------------------------------------------------- pages
def page_links(body: str, stems: set) -> str:
    """A notebook's links to another course notebook (``02_lora.ipynb#x``) go to its page."""
    def swap(m: re.Match) -> str:
        return f'href="{m.group(1)}.html{m.group(2) or ""}"' if m.group(1) in stems else m.group(0)

    return re.sub(r'href="(?:\./)?([\w-]+)\.ipynb(#[^"]*)?"', swap, body)


def nav(rows: list[dict], i: int) -> str:
    """Previous / course map / next links for the i-th (existing) notebook."""
    built = [r for r in rows if r["path"]]
    k = built.index(rows[i])
    prev = (f'<a rel="prev" href="{built[k - 1]["stem"]}.html">← {html.escape(built[k - 1]["stem"])}</a>'
            if k > 0 else "<span></span>")
    nxt = (f'<a rel="next" href="{built[k + 1]["stem"]}.html">{html.escape(built[k + 1]["stem"])} →</a>'
           if k + 1 < len(built) else "<span></span>")
    return (f'<nav class="minilora-nav">{prev}<a href="index.html">course map</a>'
            f'<a href="running.html">how to run it</a>{nxt}</nav>')


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem;
color: #222; }}
table {{ border-collapse: collapse; width: 100%; }} th, td {{ border: 1px solid #ccc; padding: .4rem .6rem;
vertical-align: top; text-align: left; }} th {{ background: #f4f4f4; }} td.headline {{ white-space: pre-wrap;
font-family: ui-monospace, monospace; font-size: .85rem; }} code, pre {{ background: #f6f6f6; }}
pre {{ padding: .8rem; overflow-x: auto; }} .planned {{ color: #888; }}
</style></head><body>
{body}
<footer><p><small>Built by <code>make site</code> from the committed notebooks on {date}.</small></p></footer>
</body></html>
"""

RUNNING = """<nav><a href="index.html">← course map</a></nav>
<h1>How to run the course</h1>
<p>These pages show each notebook as committed, with its outputs; the widgets are snapshots. To
run the notebooks and use the widgets, clone the repository and, with Python ≥ 3.10 and
<code>make</code>:</p>
<pre>make lab    # set everything up in .venv and open the course in JupyterLab
make test   # the tests, the notebooks included</pre>
<p><code>make lab</code> creates <code>.venv</code>, installs what the course needs (the CPU build of
PyTorch where there is no NVIDIA GPU), installs the <code>Python (minilora)</code> kernel and opens
<code>notebooks/</code> in JupyterLab. Open a notebook and choose <em>Run ▸ Run All Cells</em>: every
notebook runs top to bottom on 2 CPU cores in a few minutes at its default size; the
<code>parameters</code> cell at the top scales it up (a GPU, more steps, a bigger model).</p>
<p>Other targets: <code>make notebooks</code> re-executes every notebook in place;
<code>make e2e</code> drives the course in JupyterLab in a real browser (Chromium) and moves every
widget; <code>make site</code> builds these pages.</p>
"""


def index_page(rows: list[dict], heads: dict, anchors: dict) -> str:
    lines = ['<h1>minilora — the course</h1>',
             '<p>LoRA, AdaLoRA and QLoRA built from scratch in PyTorch, each seed claim measured on a real '
             'pretrained model and real data. Every page below is a notebook with its committed outputs. '
             '<a href="running.html">How to run it</a> (<code>make lab</code>).</p>',
             '<table><thead><tr><th>notebook</th><th>idea</th><th>seed section</th><th>what it measures</th>'
             '<th>headline verdict</th></tr></thead><tbody>']
    for r in rows:
        if r["path"]:
            name = f'<a href="{r["stem"]}.html">{html.escape(r["stem"])}</a>'
            head = html.escape(heads.get(r["stem"]) or "—")
            if anchors.get(r["stem"]):
                head += f' <a href="{r["stem"]}.html#{anchors[r["stem"]]}">(what we measured)</a>'
            cls = ""
        else:
            name, head, cls = f'{html.escape(r["stem"])} <em>(planned)</em>', "—", ' class="planned"'
        lines.append(f'<tr{cls}><td>{name}</td><td>{inline(r["idea"])}</td><td>{inline(r["seed"])}</td>'
                     f'<td>{inline(r["measures"])}</td><td class="headline">{head}</td></tr>')
    lines.append("</tbody></table>")
    return "\n".join(lines)


def build(folder: Path, out: Path) -> dict:
    """Write the site for the notebooks in ``folder`` into ``out`` (emptied first)."""
    from nbconvert import HTMLExporter

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rows = course_map(folder)
    from traitlets.config import Config

    exporter = HTMLExporter(config=Config({"HTMLExporter": {"template_name": "minilora",
                                                            "extra_template_basedirs": [str(TEMPLATES)]}}))
    heads, anchors, widgets = {}, {}, 0
    built = {r["stem"] for r in rows if r["path"]}
    date = time.strftime("%Y-%m-%d")
    for i, r in enumerate(rows):
        if not r["path"]:
            continue
        nb = nbformat.read(r["path"], as_version=4)
        heads[r["stem"]], anchors[r["stem"]] = headline(nb), section_anchor(nb)
        nb = copy.deepcopy(nb)
        widgets += static_widgets(nb)
        body, _ = exporter.from_notebook_node(nb, resources={"minilora_nav": nav(rows, i),
                                                             "metadata": {"name": title(nb, r["stem"])}})
        (out / f"{r['stem']}.html").write_text(page_links(body, built))
    (out / "index.html").write_text(PAGE.format(title="minilora — the course", date=date,
                                                body=index_page(rows, heads, anchors)))
    (out / "running.html").write_text(PAGE.format(title="minilora — how to run the course", date=date,
                                                  body=RUNNING))
    return {"pages": sum(1 for r in rows if r["path"]), "widgets": widgets,
            "headlines": sum(1 for h in heads.values() if h)}


def readme_table(folder: Path) -> str:
    """The README's course table, made from course.json (one source for both)."""
    lines = ["| notebook | idea | seed section | what it measures |", "|---|---|---|---|"]
    for r in course_map(folder):
        name = f"[{r['stem']}](notebooks/{r['stem']}.ipynb)" if r["path"] else f"{r['stem']} *(next)*"
        lines.append(f"| {name} | {r['idea']} | {r['seed']} | {r['measures']} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    ap.add_argument("--out", type=Path, default=ROOT / "site")
    ap.add_argument("--readme-table", action="store_true", help="print README.md's course table and stop")
    args = ap.parse_args(argv)
    if args.readme_table:
        print(readme_table(args.notebooks))
        return 0
    start = time.perf_counter()
    info = build(args.notebooks, args.out)
    print(f"site: {info['pages']} notebook pages, {info['widgets']} widgets drawn from saved state, "
          f"{info['headlines']} headlines (cells tagged 'headline') in {args.out} "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
