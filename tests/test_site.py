"""`make site`: the link checker, the course map (one source: notebooks/course.json), the headline
convention and the static drawing of saved widget state (scripts/build_site.py, check_links.py)."""

import json

import nbformat.v4 as v4
import pytest
from conftest import ROOT, load_script


@pytest.fixture(scope="module")
def links():
    return load_script("scripts/check_links.py")


@pytest.fixture(scope="module")
def site():
    return load_script("scripts/build_site.py")


def test_link_checker_accepts_a_good_site(links, tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "index.html").write_text(
        '<a href="a.html#x-%C2%B7-y">a</a> <a href="sub/">sub</a> <a href="https://example.org/no">ext</a>'
        '<img src="data:image/png;base64,iVBO"> <a href="#top">top</a> <a id="top"></a>'
        '<a href="mailto:x@y.z">mail</a> <script src="//cdn.example/x.js"></script>')
    (tmp_path / "a.html").write_text('<h1 id="x-%C2%B7-y">nbconvert-style</h1><a href="index.html">back</a>')
    (tmp_path / "sub" / "index.html").write_text('<img src="../pic.png"><a href="../a.html#x-·-y">x</a>')
    (tmp_path / "pic.png").write_bytes(b"\x89PNG")
    assert links.check_site(tmp_path) == []
    assert links.main([str(tmp_path)]) == 0


def test_link_checker_finds_each_kind_of_break(links, tmp_path):
    (tmp_path / "index.html").write_text(
        '<a href="missing.html">1</a> <a href="b.html#nowhere">2</a> <img src="gone.png">'
        '<img src="data:image/png;base64,"> <a href="../outside.html">5</a> <a href="02_lora.ipynb">6</a>')
    (tmp_path / "b.html").write_text("<p>no ids</p>")
    problems = links.check_site(tmp_path)
    assert len(problems) == 6, problems
    for needle in ("missing.html", "nowhere", "gone.png", "empty data", "outside", "02_lora.ipynb"):
        assert any(needle in p for p in problems), needle
    assert links.main([str(tmp_path)]) == 1


def test_course_map_matches_by_name_without_number(site, tmp_path):
    (tmp_path / "course.json").write_text(json.dumps({"notebooks": [
        {"notebook": "00_tour", "idea": "i0", "seed": "—", "measures": "m0"},
        {"notebook": "06_qlora", "idea": "iq", "seed": "QLoRA §3", "measures": "mq"},
        {"notebook": "07_paged_optimizer", "idea": "ip", "seed": "QLoRA §3", "measures": "mp"}]}))
    for stem in ("00_tour", "06_paged_optimizer", "09_extra"):   # renumbered, and one not in the map
        (tmp_path / f"{stem}.ipynb").write_text(json.dumps(v4.new_notebook()))
    rows = site.course_map(tmp_path)
    assert [(r["stem"], r["path"] is not None, r["idea"]) for r in rows] == [
        ("00_tour", True, "i0"), ("06_paged_optimizer", True, "ip"), ("06_qlora", False, "iq"),
        ("09_extra", True, "—")]


def test_a_letter_after_the_number_splits_a_lesson_and_sorts_after_it(site, tmp_path):
    (tmp_path / "course.json").write_text(json.dumps({"notebooks": [
        {"notebook": "02_lora", "idea": "i2", "seed": "—", "measures": "m2"},
        {"notebook": "02b_lora_ablations", "idea": "i2b", "seed": "—", "measures": "m2b"},
        {"notebook": "03_adalora", "idea": "i3", "seed": "—", "measures": "m3"}]}))
    for stem in ("03_adalora", "02b_lora_ablations", "02_lora"):
        (tmp_path / f"{stem}.ipynb").write_text(json.dumps(v4.new_notebook()))
    assert site.topic("02b_lora_ablations") == "lora_ablations"
    assert [(r["stem"], r["idea"]) for r in site.course_map(tmp_path)] == [
        ("02_lora", "i2"), ("02b_lora_ablations", "i2b"), ("03_adalora", "i3")]


def test_readme_course_table_is_made_from_course_json(site):
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## The course", 1)[1].split("\n\n")[1].strip()
    assert table == site.readme_table(ROOT / "notebooks"), \
        "README.md's course table differs from notebooks/course.json: print it with " \
        "`python scripts/build_site.py --readme-table`"


def test_headline_is_the_output_of_the_cell_tagged_headline(site):
    nb = v4.new_notebook()
    nb.cells = [v4.new_markdown_cell("# 09 · A title\n\n## What we measured"),
                v4.new_code_cell("print(1)", outputs=[v4.new_output("stream", name="stdout", text="no\n")]),
                v4.new_code_cell("verdict()", metadata={"tags": ["headline"]}, outputs=[
                    v4.new_output("stream", name="stderr", text="a warning\n"),
                    v4.new_output("stream", name="stdout", text="LoRA r=8 matches full FT\n")])]
    assert site.headline(nb) == "LoRA r=8 matches full FT"
    assert site.title(nb, "x") == "09 · A title"
    assert site.section_anchor(nb) == "What-we-measured"
    nb.cells[2].metadata["tags"] = []
    assert site.headline(nb) == ""


def test_saved_widget_state_is_drawn_as_disabled_controls_and_the_figure(site):
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_row", "IPY_MODEL_out"]}},
        "row": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_dd", "IPY_MODEL_blank",
                                                                  "IPY_MODEL_sl", "IPY_MODEL_tb"]}},
        "dd": {"model_name": "DropdownModel", "state": {"description": "matrix", "index": 1,
                                                        "_options_labels": ["q", "v<1>"]}},
        "blank": {"model_name": "DropdownModel", "state": {"description": "2nd level", "index": None,
                                                           "_options_labels": ["off (fp32)", "64"]}},
        "sl": {"model_name": "IntSliderModel", "state": {"description": "rank r", "min": 0, "max": 8,
                                                         "step": 1, "value": 4}},
        "tb": {"model_name": "ToggleButtonsModel", "state": {"index": 0, "_options_labels": ["one", "all"]}},
        "out": {"model_name": "OutputModel", "state": {"outputs": [
            {"output_type": "display_data", "data": {"image/png": "iVBORw0K\n", "text/plain": "<Figure>"}}]}},
    }
    nb = v4.new_notebook(metadata={"widgets": {site.WIDGET_STATE: {"state": state}}})
    nb.cells = [v4.new_code_cell("explorer", outputs=[v4.new_output("display_data", data={
        site.WIDGET_VIEW: {"model_id": "box"}, "text/plain": "VBox(children=(...))"})])]
    assert site.static_widgets(nb) == 1
    html = nb.cells[0].outputs[0]["data"]["text/html"]
    assert "VBox(" not in html and "widgets" not in nb.metadata
    assert "<option selected>v&lt;1&gt;</option>" in html                  # escaped, the saved choice
    assert "<select disabled><option selected></option><option>off (fp32)" in html  # blank stays blank
    assert 'type="range" disabled min="0" max="8" step="1" value="4"' in html
    assert '<button disabled class="mw-active">one</button>' in html
    assert '<img alt="figure" src="data:image/png;base64,iVBORw0K">' in html
    assert "[widget state not saved]" in site.render_widget("nope", state)


def test_a_small_course_builds_and_its_links_check(site, links, tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    (folder / "course.json").write_text(json.dumps({"notebooks": [
        {"notebook": "00_a", "idea": "`x`", "seed": "—", "measures": "m"},
        {"notebook": "01_b", "idea": "i", "seed": "s", "measures": "m"},
        {"notebook": "02_c", "idea": "planned", "seed": "s", "measures": "m"}]}))
    texts = {"00_a": "# 00 · A\n\nnext: [B](01_b.ipynb)\n\n## What we measured", "01_b": "# 01 · B"}
    for stem, text in texts.items():
        result = v4.new_output("execute_result", data={"text/plain": f"verdict {stem}"}, execution_count=1)
        nb = v4.new_notebook()
        nb.cells = [v4.new_markdown_cell(text),
                    v4.new_code_cell("1", metadata={"tags": ["headline"]}, outputs=[result])]
        (folder / f"{stem}.ipynb").write_text(json.dumps(nb))
    info = site.build(folder, tmp_path / "site")
    assert info == {"pages": 2, "widgets": 0, "headlines": 2}
    index = (tmp_path / "site" / "index.html").read_text()
    assert "verdict 00_a" in index and 'href="00_a.html#What-we-measured"' in index and "(planned)" in index
    page = (tmp_path / "site" / "00_a.html").read_text()
    assert 'href="01_b.html"' in page and 'rel="next"' in page
    assert "require.min.js" not in page and "html-manager" not in page
    assert links.check_site(tmp_path / "site") == []
