"""The import rules of docs/architecture.md, checked by reading every import with ``ast``.

1. No import cycle between minilora's modules (imports inside functions count).
2. Floors: utilities (checks, files) import nothing from minilora; the ground floor (models,
   data, train, adamw, stats) imports only the ground floor; the core (everything but viz/,
   widgets/, course/) never imports viz/, widgets/ or course/.
3. viz/ never imports widgets/.
4. Notebooks import ``minilora`` or ``minilora.<package>`` only, never a module inside a
   package (``minilora.quant.analysis``).

Each rule is a function over an import graph, so the tests below also show that it fires
on a graph that breaks it (a cycle, an upward import, a private notebook import).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from minilora.course.cache import imported_modules, module_files

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "minilora"
UTILITIES = ("minilora.checks", "minilora.files")
GROUND = ("minilora.models", "minilora.data", "minilora.train", "minilora.adamw", "minilora.stats",
          *UTILITIES)
TOP = ("minilora.viz", "minilora.widgets", "minilora.course")


module_names = module_files  # {dotted name: file}; the cache's reader, so both agree on imports


def import_graph(root: Path = PACKAGE, package: str = "minilora") -> dict[str, set[str]]:
    modules = module_names(root, package)
    return {m: imported_modules(m, f.read_text(encoding="utf-8"), f.name == "__init__.py", modules)
            for m, f in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _in(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def floor_violations(graph: dict[str, set[str]]) -> list[str]:
    """Upward imports (rule 2) and viz → widgets (rule 3), as readable lines."""
    bad = []
    for a, deps in sorted(graph.items()):
        for b in sorted(deps):
            if _in(a, UTILITIES):
                bad.append(f"{a} (utility) imports {b}")
            elif _in(a, GROUND) and not _in(b, GROUND):
                bad.append(f"{a} (ground floor) imports {b}")
            elif not _in(a, TOP) and _in(b, TOP):
                bad.append(f"{a} (core) imports {b}")
            elif _in(a, ("minilora.viz",)) and _in(b, ("minilora.widgets",)):
                bad.append(f"{a} (viz) imports {b}")
    return bad


def notebook_sources(path: Path) -> list[str]:
    """Code cells of a notebook with IPython magics and shell lines blanked out."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["\n".join("" if line.lstrip().startswith(("%", "!")) else line
                      for line in "".join(c["source"]).splitlines())
            for c in cells if c["cell_type"] == "code"]


def private_imports(sources, modules: set[str]) -> list[str]:
    """Imports in ``sources`` that reach a module inside a package (rule 4):
    ``import minilora.a.b``, ``from minilora.a.b import x`` and ``from minilora.a import b``
    where ``minilora.a.b`` is one of ``modules``."""
    bad = []
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            bad += [n for n in names if n.startswith("minilora.") and n.count(".") >= 2 and n in modules]
    return list(dict.fromkeys(bad))


MODULES = set(module_names(PACKAGE))
PACKAGES = {m for m, f in module_names(PACKAGE).items() if f.name == "__init__.py"}
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


# ---- the rules hold for minilora and its notebooks ------------------------------------------

def test_minilora_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_no_module_imports_a_higher_floor():
    assert floor_violations(import_graph()) == []


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_imports_only_public_paths(notebook):
    assert private_imports(notebook_sources(notebook), MODULES) == []


def test_every_package_says_what_its_modules_do():
    for name in PACKAGES:
        doc = ast.get_docstring(ast.parse((module_names(PACKAGE)[name]).read_text(encoding="utf-8")))
        assert doc and len(doc) > 80, f"{name}/__init__.py needs a docstring saying what the idea is"


# ---- and each rule fires where it should --------------------------------------------------

def _write_package(root: Path, files: dict[str, str]) -> Path:
    pkg = root / "minilora"
    for rel, text in files.items():
        f = pkg / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(text)
    return pkg


def test_a_function_level_import_cycle_is_found(tmp_path):
    pkg = _write_package(tmp_path, {
        "__init__.py": "", "lora/__init__.py": "", "lora/layer.py": "from ..adamw import AdamW\n",
        "adamw.py": "def step():\n    from .lora import layer\n",
    })
    found = cycles(import_graph(pkg))
    assert found and "minilora.adamw" in found[0] and "minilora.lora.layer" in found[0]


def test_an_upward_import_is_found(tmp_path):
    pkg = _write_package(tmp_path, {
        "__init__.py": "", "train.py": "def plot():\n    from .viz import lora\n",
        "viz/__init__.py": "", "viz/lora.py": "from ..widgets import panel\n",
        "widgets/__init__.py": "", "widgets/panel.py": "",
        "quant/__init__.py": "", "quant/codes.py": "from ..course import cache\n",
        "course/__init__.py": "", "course/cache.py": "",
    })
    bad = floor_violations(import_graph(pkg))
    assert "minilora.train (ground floor) imports minilora.viz.lora" in bad
    assert "minilora.viz.lora (viz) imports minilora.widgets.panel" in bad
    assert any(line.startswith("minilora.quant.codes (core) imports minilora.course") for line in bad)


def test_a_private_notebook_import_is_found():
    cells = ["from minilora.quant import nf4_levels\nimport minilora",
             "from minilora.quant.analysis import weight_error\nimport minilora.rank.spectra as s",
             "from minilora.lora import layer"]
    assert private_imports(cells, MODULES) == ["minilora.quant.analysis", "minilora.rank.spectra",
                                               "minilora.lora.layer"]


def test_module_names_are_read_from_files():
    names = module_names(PACKAGE)
    assert "minilora" in names and "minilora.quant.levels" in names
    assert all(re.fullmatch(r"minilora(\.\w+)*", n) for n in names)
