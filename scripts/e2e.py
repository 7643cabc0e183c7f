"""The course in a real browser (`make e2e`): JupyterLab + Chromium, every widget moved as a person would.

    python scripts/e2e.py [--only 05] [--out build/e2e]

For each notebook that has a widget (an output of type application/vnd.jupyter.widget-view+json
in the committed file, or a code cell tagged ``widget``; nothing is hard-coded), on a copy of the
notebooks served by a JupyterLab started here (127.0.0.1, random port, a token; stopped whatever
happens):

1. open it as a learner does after ``make lab`` and, before anything runs, check that the tab
   shows no unsaved-changes dot and that no widget renders as text (``VBox(children=...``);
2. pick the ``minilora`` kernel (the kernel dialog), Run ▸ Run All Cells, wait for the kernel,
   and check that every code cell ran, without an error output;
3. for every control of every widget: move it by keyboard or mouse, wait for the kernel, check
   that the output image changed (pixel difference) and that no control lost its selection;
   move it back and check the image is restored; check the control is usable (a dropdown whose
   options fit its box, a slider with at least 2 px per value).

Screenshots of every step go to build/e2e/<notebook>/; the last line is the summary
``e2e: N notebooks, M widgets moved, K figures changed, E errors`` (exit 1 if E > 0).
The browser is Debian's Chromium (/usr/bin/chromium), driven by Python Playwright.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from e2e_server import (  # noqa: E402
    LabServer,
    free_port,
    install_kernelspec,
    isolated_jupyter_env,
    lab_command,
    new_token,
    stop_on_signals,
)

ROOT = Path(__file__).resolve().parent.parent
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KERNEL, KERNEL_DISPLAY = "minilora", "Python (minilora)"
# The repr ipywidgets prints when the widget itself cannot be shown: VBox(children=(...
WIDGET_AS_TEXT = re.compile(r"^\s*\[?['\"]?[A-Z]\w*\((children|value|description|options|layout)=")
# A matplotlib figure shown as its repr instead of an image (no inline backend).
FIGURE_AS_TEXT = re.compile(r"^<Figure size [\d.]+x[\d.]+ with \d+ Axes>$")
# Fraction of pixels that must differ for "the output changed": identical renders differ by 0, and a
# marker moving a few pixels on a 900 x 400 figure is ~3e-4 (05's 2nd level 256 -> 512), so keep it low.
CHANGED = 2e-5
MIN_PX_PER_VALUE = 1.0   # fewer pixels of slider track per value: some values cannot be reached by mouse


# ---------------------------------------------------------------- pieces without a browser
def widget_notebooks(folder: Path) -> list[Path]:
    """Notebooks in ``folder`` with a widget: a widget-view output or a code cell tagged ``widget``."""
    found = []
    for path in sorted(folder.glob("*.ipynb")):
        nb = json.loads(path.read_text())
        for cell in nb.get("cells", []):
            tagged = "widget" in cell.get("metadata", {}).get("tags", [])
            shown = any(WIDGET_MIME in o.get("data", {}) for o in cell.get("outputs", []))
            if cell.get("cell_type") == "code" and (tagged or shown):
                found.append(path)
                break
    return found


def image_difference(a: bytes, b: bytes, tolerance: int = 8) -> float:
    """Fraction of pixels of two PNGs that differ by more than ``tolerance`` in any channel
    (1.0 when the sizes differ)."""
    from PIL import Image, ImageChops

    ia, ib = (Image.open(io.BytesIO(x)).convert("RGB") for x in (a, b))
    if ia.size != ib.size:
        return 1.0
    diff = ImageChops.difference(ia, ib).convert("L").point(lambda v: 255 if v > tolerance else 0)
    return diff.histogram()[255] / (ia.size[0] * ia.size[1])


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_")[:40] or "control"


@dataclass
class Report:
    notebooks: int = 0
    moved: int = 0
    changed: int = 0
    errors: list[str] = field(default_factory=list)

    def error(self, notebook: str, message: str) -> None:
        self.errors.append(f"{notebook}: {message}")
        print(f"  ERROR {message}", flush=True)

    def summary(self) -> str:
        return (f"e2e: {self.notebooks} notebooks, {self.moved} widgets moved, "
                f"{self.changed} figures changed, {len(self.errors)} errors")


# ---------------------------------------------------------------- in the page
STATE_JS = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  if (!w || !w.content || !w.content.model || !w.sessionContext) return null;
  const s = w.sessionContext, k = s.session && s.session.kernel, m = w.content.model, cells = [];
  for (let i = 0; i < m.cells.length; i++) {
    const c = m.cells.get(i);
    if (c.type !== 'code') { cells.push(null); continue; }
    cells.push({n: c.executionCount, running: c.executionState === 'running',
      outputs: c.outputs.toJSON().map(o => o.output_type === 'error' ? 'error ' + o.ename + ': ' + o.evalue
        : (o.data && o.data['application/vnd.jupyter.widget-view+json']) ? 'widget' : o.output_type)});
  }
  return {kernel: k ? k.name : null, status: k ? k.status : 'none', pending: s.hasNoKernel,
          dirty: w.context.model.dirty, cells};
}"""

MARK_CELL_JS = """async (i) => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  nb.activeCellIndex = i;
  if (nb.scrollToItem) { await nb.scrollToItem(i, 'start'); }
  document.querySelectorAll('[data-e2e-cell]').forEach(e => e.removeAttribute('data-e2e-cell'));
  nb.widgets[i].node.setAttribute('data-e2e-cell', String(i));
}"""

# Texts of outputs that should be widgets but render as something else, per output element.
OUTPUT_TEXTS_JS = """(root) => Array.from(root.querySelectorAll('.jp-OutputArea-output')).map(e => ({
  mime: e.getAttribute('data-mime-type'), text: (e.textContent || '').trim().slice(0, 200)}))"""

# Selects whose option labels do not fit their box (label text width vs the box's inner width).
DROPDOWN_FIT_JS = """(sel) => {
  const cs = getComputedStyle(sel), ctx = document.createElement('canvas').getContext('2d');
  ctx.font = cs.font;
  const room = sel.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight) - 16;
  const labels = Array.from(sel.options).map(o => o.text);
  return {room, cut: labels.filter(t => ctx.measureText(t).width > room), n: labels.length,
          index: sel.selectedIndex, label: sel.selectedIndex >= 0 ? sel.options[sel.selectedIndex].text : ''};
}"""

# A control's description: its label, else its own text (a checkbox), without zero-width spaces.
LABEL_JS = """(e) => { const clean = t => (t || '').replace(/\u200b/g, '').trim();
  const l = e.querySelector('.widget-label'); return clean(l && l.innerText) || clean(e.innerText); }"""

# Labels, descriptions and readouts whose text is cut (ellipsis or clipped): wider than their box.
CUT_TEXT_JS = """(root) => Array.from(root.querySelectorAll(
    '.widget-label, .widget-label-basic span, .widget-readout, .widget-toggle-button, .widget-button'))
  .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
  .map(e => (e.innerText || e.title || '').replace(/\u200b/g, '').trim()).filter(t => t)"""

CONTROLS = ".widget-dropdown, .widget-hslider, .widget-toggle-buttons, .widget-checkbox, .widget-text"


class Notebook:
    """One notebook open in a page of the browser; the steps of the module docstring."""

    def __init__(self, page, base: str, rel: str, out: Path, report: Report, timeout: float):
        self.page, self.base, self.rel, self.out, self.report = page, base, rel, out, report
        self.name, self.timeout, self.shot = Path(rel).stem, timeout, 0
        self._last_step: float | None = None  # a slider's step, as one arrow key moved it
        out.mkdir(parents=True, exist_ok=True)

    def error(self, message: str) -> None:
        self.report.error(self.name, message)

    def screenshot(self, what: str, locator=None) -> bytes:
        self.shot += 1
        self.dismiss_news()
        path = self.out / f"{self.shot:02d}_{slug(what)}.png"
        return (locator or self.page).screenshot(path=str(path), **({} if locator else {"full_page": False}))

    def state(self) -> dict:
        return self.page.evaluate(STATE_JS)

    def wait_idle(self, timeout: float = 120, quiet: float = 1.0) -> dict:
        """Wait until the kernel is idle, no cell is running, and that has held for ``quiet`` s."""
        deadline, since = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            s = self.state()
            busy = s is None or s["status"] != "idle" or any(c and c["running"] for c in s["cells"])
            if busy:
                since = None
            elif since is None:
                since = time.monotonic()
            elif time.monotonic() - since >= quiet:
                return s
            time.sleep(0.2)
        raise TimeoutError(f"kernel not idle within {timeout:.0f} s")

    def dismiss_news(self, wait: float = 0) -> None:
        """Answer 'No' to JupyterLab's 'notified about official Jupyter news?' toast (it comes
        a few seconds after the page; called before every screenshot)."""
        toast = self.page.locator(".Toastify__toast", has_text="Jupyter news")
        try:
            if wait:
                toast.first.wait_for(timeout=wait * 1000)
            if toast.count():
                toast.first.get_by_role("button", name="No", exact=True).click(timeout=5000)
        except Exception:  # noqa: BLE001 (no toast shown: nothing to dismiss)
            pass

    def widgets_as_text(self, wait: float = 15) -> list[str]:
        """Outputs that are widgets in the notebook model but are not drawn as widgets: shown as
        their text repr (``VBox(children=...``), or stuck at 'Loading widget...' / an error."""
        bad = []
        cells = [i for i, c in enumerate(self.state()["cells"]) if c and "widget" in c["outputs"]]
        for i in cells:
            self.page.evaluate(MARK_CELL_JS, i)
            cell = self.page.locator(f"[data-e2e-cell='{i}']")
            deadline = time.monotonic() + wait
            while True:
                outs = [o for o in cell.evaluate(OUTPUT_TEXTS_JS)
                        if o["mime"] != "application/vnd.jupyter.stderr"]
                drawn = cell.locator(".jp-OutputArea-output .jupyter-widgets").count() > 0
                if drawn or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
            if not drawn:
                text = next((o["text"] for o in outs if o["text"]), "") or "nothing drawn"
                bad.append(f"cell {i}: {text[:90]}")
        for o in self.page.locator(".jp-NotebookPanel").first.evaluate(OUTPUT_TEXTS_JS):
            if o["mime"] == "text/plain" and WIDGET_AS_TEXT.match(o["text"]) and \
                    not any(o["text"][:60] in b for b in bad):
                bad.append(o["text"][:90])
            if o["mime"] == "text/plain" and FIGURE_AS_TEXT.match(o["text"]):
                bad.append(f"a figure, not drawn: {o['text'][:60]}")
        return bad

    # ---- 1. open
    def open(self, token: str) -> None:
        self.page.goto(f"{self.base}/lab/tree/{self.rel}?token={token}&reset")
        self.page.wait_for_selector(".jp-NotebookPanel", timeout=120_000)
        self.accept_kernel_dialog()
        self.wait_idle(timeout=180)
        self.dismiss_news(wait=5)  # widget state is restored from the notebook once the session is ready
        if self.page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty").count():
            self.error("unsaved-changes dot on opening, before anything ran (metadata rewritten on open)")
        for text in self.widgets_as_text():
            self.error(f"on opening, a widget renders as text or not at all: {text}")
        self.screenshot("opened")

    def accept_kernel_dialog(self) -> bool:
        dialog = self.page.locator(".jp-Dialog")
        try:
            dialog.first.wait_for(timeout=3000)
        except Exception:  # noqa: BLE001 (no dialog: the notebook's kernel exists)
            return False
        dialog.locator("select").first.select_option(label=KERNEL_DISPLAY)
        dialog.locator(".jp-Dialog-button.jp-mod-accept").first.click()
        return True

    # ---- 2. run
    def pick_kernel(self) -> None:
        if (self.state() or {}).get("kernel") == KERNEL:
            return
        self.page.locator(".jp-NotebookPanel-toolbar .jp-Toolbar-kernelName").first.click()
        if not self.accept_kernel_dialog():
            raise RuntimeError("the kernel dialog did not open")
        deadline = time.monotonic() + 120
        while (self.state() or {}).get("kernel") != KERNEL:
            if time.monotonic() > deadline:
                raise TimeoutError(f"kernel {KERNEL} did not start")
            time.sleep(0.3)
        self.wait_idle(timeout=180)

    def run_all(self) -> float:
        start = time.monotonic()
        self.page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).first.click()
        self.page.locator("li.lm-Menu-item", has=self.page.locator(
            ".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$"))).first.click()
        deadline = time.monotonic() + 30
        while not any(c and c["running"] for c in self.state()["cells"]):
            if time.monotonic() > deadline:
                break  # very fast notebook: it may already be done
            time.sleep(0.2)
        s = self.wait_idle(timeout=self.timeout, quiet=3.0)
        seconds = time.monotonic() - start
        code = [c for c in s["cells"] if c]
        for i, c in enumerate(s["cells"]):
            for o in (c or {}).get("outputs", []):
                if o.startswith("error"):
                    self.error(f"cell {i}: {o[:160]}")
        counts = [c["n"] for c in code]
        if counts != list(range(1, len(code) + 1)):
            ran = sum(n is not None for n in counts)
            self.error(f"{len(code) - ran} of {len(code)} code cells did not run" if ran < len(code)
                       else f"not every code cell ran once in order (execution counts {counts})")
        for text in self.widgets_as_text():
            self.error(f"after running, an output renders as text or not at all: {text}")
        self.screenshot("ran all")
        return seconds

    # ---- 3. widgets
    def explore_widgets(self) -> None:
        cells = [i for i, c in enumerate(self.state()["cells"]) if c and "widget" in c["outputs"]]
        if not cells:
            self.error("no widget was displayed after running")
        for i in cells:
            self.page.evaluate(MARK_CELL_JS, i)
            cell = self.page.locator(f"[data-e2e-cell='{i}']")
            cell.scroll_into_view_if_needed()
            controls = cell.locator(CONTROLS)
            n = controls.count()
            if n == 0:
                self.error(f"cell {i}: widget output has no control")
            for text in cell.evaluate(CUT_TEXT_JS):
                self.error(f"cell {i}: text cut by its box: '{text}'")
            for k in range(n):
                self.page.evaluate(MARK_CELL_JS, i)
                try:
                    self.explore_control(cell, cell.locator(CONTROLS).nth(k), i)
                except Exception as e:  # noqa: BLE001 (recorded; the next control is still moved)
                    self.error(f"cell {i} control {k}: {type(e).__name__}: {str(e).splitlines()[0][:160]}")

    def output_image(self, cell) -> bytes:
        """The panel's output (its HTML summaries and Output widgets) as one PNG strip."""
        from PIL import Image

        # no hover or focus styling from the last move may leak into what is compared
        self.page.mouse.move(0, 0)
        self.page.evaluate("() => document.activeElement && document.activeElement.blur()")
        parts = cell.locator(".widget-html, .widget-output")
        images = [Image.open(io.BytesIO(parts.nth(j).screenshot())).convert("RGB")
                  for j in range(parts.count())]
        if not images:
            return cell.screenshot()
        strip = Image.new("RGB", (max(im.width for im in images), sum(im.height for im in images)), "white")
        y = 0
        for im in images:
            strip.paste(im, (0, y))
            y += im.height
        buf = io.BytesIO()
        strip.save(buf, format="PNG")
        return buf.getvalue()

    def settle(self, cell, reference: bytes, want_change: bool, timeout: float = 120) -> tuple[bytes, float]:
        """After a move: wait for the kernel and for the image to differ from (want_change) or
        equal (not want_change) ``reference``, then to hold still; return it and its difference."""
        deadline = time.monotonic() + timeout
        time.sleep(0.5)
        while True:
            self.wait_idle(timeout=max(5, deadline - time.monotonic()), quiet=0.6)
            img = self.output_image(cell)
            diff = image_difference(reference, img)
            if (diff > CHANGED) == want_change or time.monotonic() > deadline:
                again = self.output_image(cell)
                if image_difference(img, again) == 0:
                    return again, image_difference(reference, again)
            time.sleep(0.4)

    def check_selection(self, cell, label: str) -> None:
        for j, info in enumerate(cell.locator(".widget-dropdown select").evaluate_all(
                "els => els.map(e => e.selectedIndex)")):
            if info < 0:
                name = cell.locator(".widget-dropdown").nth(j).locator(".widget-label").inner_text()
                self.error(f"after {label}: dropdown '{name}' shows no selection (blank)")
        for j in range(cell.locator(".widget-toggle-buttons").count()):
            group = cell.locator(".widget-toggle-buttons").nth(j)
            if group.locator(".mod-active").count() == 0:
                self.error(f"after {label}: toggle buttons '{group.locator('.widget-label').inner_text()}' "
                           "show no selection")

    def explore_control(self, cell, control, cell_index: int) -> None:
        kind = next(k for k in ("dropdown", "hslider", "toggle-buttons", "checkbox", "text")
                    if control.evaluate(f"e => e.classList.contains('widget-{k}')"))
        label = control.evaluate(LABEL_JS) or kind
        what = f"cell {cell_index} {kind} '{label}'"
        print(f"  {what}", flush=True)
        control.scroll_into_view_if_needed()
        base = self.output_image(cell)
        self.screenshot(f"{label} before", cell)
        moves = self.moves(kind, control, label)
        moved, changed_all = False, True
        for name, act, expect in moves:
            act()
            img, diff = self.settle(cell, base, want_change=expect == "changed")
            self.screenshot(f"{label} {name}", cell)
            moved = True
            self.check_selection(cell, f"{label} {name}")
            if expect == "changed":
                if diff <= CHANGED:
                    changed_all = False
                    self.error(f"{what}: output did not change after '{name}' (difference {diff:.5f})")
            elif diff > CHANGED:
                self.error(f"{what}: output not restored after '{name}' (difference {diff:.5f})")
        self.report.moved += moved
        self.report.changed += moved and changed_all
        self.usability(kind, control, what)

    def moves(self, kind: str, control, label: str) -> list:
        """(name, action, expectation) for one control: a neighbouring value, the first value
        where that is another one, and back to where it was."""
        page = self.page
        if kind == "dropdown":
            sel = control.locator("select")
            info = sel.evaluate(DROPDOWN_FIT_JS)
            i0, n = info["index"], info["n"]
            if n < 2:
                return []  # one option: nothing to move
            i1 = i0 + 1 if i0 < n - 1 else i0 - 1
            # the choice a person makes in the opened list (keys on a closed <select> do nothing
            # in headless Chromium; Playwright's select_option dispatches the same input/change)
            out = [(f"choose {sel.evaluate('(e, i) => e.options[i].text', i1)}",
                    lambda: sel.select_option(index=i1), "changed")]
            if n > 2 and i0 > 1 and i1 != 0:
                out.append(("first option", lambda: sel.select_option(index=0), "changed"))
            out.append(("back", lambda: sel.select_option(index=i0), "restored"))
            return out
        if kind == "hslider":
            handle = control.locator(".noUi-handle").first
            now, top = (float(handle.get_attribute(a)) for a in ("aria-valuenow", "aria-valuemax"))
            fwd, back = ("ArrowRight", "ArrowLeft") if now < top else ("ArrowLeft", "ArrowRight")

            def forward():
                handle.focus()
                page.keyboard.press(fwd)
                self._last_step = abs(float(handle.get_attribute("aria-valuenow")) - now) or None

            return [(f"key {fwd}", forward, "changed"),
                    (f"key {back}", lambda: (handle.focus(), page.keyboard.press(back)), "restored")]
        if kind == "toggle-buttons":
            buttons = control.locator("button")
            active = [j for j in range(buttons.count())
                      if "mod-active" in (buttons.nth(j).get_attribute("class") or "")]
            j0 = active[0] if active else 0
            j1 = (j0 + 1) % buttons.count()
            return [(f"click {buttons.nth(j1).inner_text()}", lambda: buttons.nth(j1).click(), "changed"),
                    (f"click {buttons.nth(j0).inner_text()}", lambda: buttons.nth(j0).click(), "restored")]
        if kind == "checkbox":
            box = control.locator("input[type=checkbox]")
            return [("click", lambda: box.click(), "changed"),
                    ("click again", lambda: box.click(), "restored")]
        field_ = control.locator("input").first
        original = field_.input_value()
        other = "It was not good." if original != "It was not good." else "A gorgeous, funny and moving film."
        return [(f"type '{other}'", lambda: (field_.fill(other), field_.press("Enter")), "changed"),
                ("type the original", lambda: (field_.fill(original), field_.press("Enter")), "restored")]

    def usability(self, kind: str, control, what: str) -> None:
        """Can a person read and set it? Option labels fit the dropdown; a slider offers at
        least MIN_PX_PER_VALUE pixels of track per value (else a mouse cannot pick one)."""
        if kind == "dropdown":
            info = control.locator("select").evaluate(DROPDOWN_FIT_JS)
            if info["cut"]:
                self.error(f"{what}: {len(info['cut'])} of {info['n']} option labels are cut by the box "
                           f"({info['room']:.0f} px of text room), e.g. '{info['cut'][0]}'")
        elif kind == "hslider":
            handle = control.locator(".noUi-handle").first
            low, high = (float(handle.get_attribute(a)) for a in ("aria-valuemin", "aria-valuemax"))
            track = control.locator(".noUi-target").first.bounding_box()["width"]
            step = self._last_step or 1.0
            values = (high - low) / step + 1
            if track / max(values - 1, 1) < MIN_PX_PER_VALUE:
                self.error(f"{what}: {values:.0f} values on a {track:.0f} px track "
                           f"({track / (values - 1):.2f} px per value): a mouse cannot pick one")

    def shutdown(self) -> None:
        try:
            self.page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
        except Exception:  # noqa: BLE001 (the server stop kills what is left)
            pass


# ---------------------------------------------------------------- the run
def chromium_path() -> str:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("e2e: Chromium not found; install Debian's package: apt-get install -y chromium")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notebooks", type=Path, default=ROOT / "notebooks")
    ap.add_argument("--only", default="",
                    help="only the notebooks whose name contains one of these (comma-separated)")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "e2e")
    ap.add_argument("--timeout", type=float, default=1200, help="seconds for one notebook's Run All")
    ap.add_argument("--headed", action="store_true")
    ap.add_argument("--open-only", action="store_true",
                    help="only step 1: open each notebook and check what shows before anything runs")
    ap.add_argument("--no-trust", action="store_true",
                    help="do not trust the notebooks first (as `make lab` did before it did so)")
    args = ap.parse_args(argv)
    started = time.monotonic()
    stop_on_signals()
    notebooks = widget_notebooks(args.notebooks)
    if args.only:
        notebooks = [p for p in notebooks if any(s and s in p.name for s in args.only.split(","))]
    if not notebooks:
        print("e2e: no notebook with a widget found", file=sys.stderr)
        return 1
    shutil.rmtree(args.out, ignore_errors=True)
    served = args.out / "root"          # a copy: Lab's autosave must never touch the committed files
    shutil.copytree(args.notebooks, served / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    env = isolated_jupyter_env(args.out / "jupyter")
    env.setdefault("MINILORA_CACHE", str(ROOT / ".cache" / "minilora"))
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT))
    install_kernelspec(env, KERNEL, KERNEL_DISPLAY)
    # what `make lab` does before opening the course: trust its notebooks (else Lab renders no widget)
    trust = [] if args.no_trust else sorted((served / "notebooks").glob("*.ipynb"))
    if trust:
        subprocess.run([sys.executable, "-m", "jupyter", "trust", *map(str, trust)], env=env, check=True,
                       stdout=subprocess.DEVNULL)
    port, token = free_port(), new_token()
    base = f"http://127.0.0.1:{port}"
    report = Report()
    print(f"e2e: {len(notebooks)} notebooks with widgets: {', '.join(p.name for p in notebooks)}; "
          f"JupyterLab on {base}", flush=True)
    server = LabServer(lab_command(served, port, token), f"{base}/api", env=env,
                       log=args.out / "jupyterlab.log")
    try:
        run_all(args, notebooks, server, base, token, report)
    except SystemExit as e:  # a signal (stop_on_signals): the server is already stopped here
        report.errors.append(f"interrupted (exit {e.code}) after {report.notebooks} notebooks")
    print(f"wall time {time.monotonic() - started:.0f} s; screenshots in {args.out}")
    for e in report.errors:
        print(f"  error: {e}")
    print(report.summary())
    return 1 if report.errors else 0


def run_all(args, notebooks: list[Path], server: LabServer, base: str, token: str, report: Report) -> None:
    """Steps 1-3 for each notebook, in one browser, against the running ``server``."""
    from playwright.sync_api import sync_playwright

    with server, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            str(args.out / "chromium-profile"), executable_path=chromium_path(), headless=not args.headed,
            args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 1000})
        try:
            for path in notebooks:
                t0 = time.monotonic()
                print(f"{path.name}", flush=True)
                page = browser.new_page()
                nb = Notebook(page, base, f"notebooks/{path.name}", args.out / path.stem, report,
                              args.timeout)
                try:
                    nb.open(token)
                    if not args.open_only:
                        nb.pick_kernel()
                        seconds = nb.run_all()
                        print(f"  ran all cells in {seconds:.0f} s", flush=True)
                        nb.explore_widgets()
                except Exception as e:  # noqa: BLE001 (recorded as an error; the next notebook runs)
                    nb.error(f"{type(e).__name__}: {str(e).splitlines()[0][:200]}")
                    try:
                        nb.screenshot("failure")
                    except Exception:  # noqa: BLE001
                        pass
                finally:
                    nb.shutdown()
                    page.close()
                report.notebooks += 1
                print(f"  {path.name}: {time.monotonic() - t0:.0f} s", flush=True)
        finally:
            browser.close()


if __name__ == "__main__":
    sys.exit(main())
