"""The browser harness's pieces that need no browser (scripts/e2e_server.py, scripts/e2e.py):
port choice, server start/stop (kernels included) and cleanup on failure, the pixel difference,
which notebooks have widgets, and the metadata scripts/run_notebooks.py writes."""

import io
import json
import socket
import sys
import textwrap
import time

import pytest

psutil = pytest.importorskip("psutil")
PIL = pytest.importorskip("PIL")

from conftest import load_script  # noqa: E402


@pytest.fixture(scope="module")
def server_mod():
    return load_script("scripts/e2e_server.py")


@pytest.fixture(scope="module")
def e2e():
    return load_script("scripts/e2e.py")


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# A stand-in for `jupyter lab`: answers /api on its port and starts a "kernel" in a session of
# its own (as jupyter_client does), writing that child's pid to a file.
FAKE_SERVER = textwrap.dedent("""
    import http.server, subprocess, sys
    port, pidfile = int(sys.argv[1]), sys.argv[2]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    open(pidfile, "w").write(str(child.pid))
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/api" else 404)
            self.end_headers()
            self.wfile.write(b"{}")
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
""")


def fake_server(server_mod, tmp_path, **kw):
    script = tmp_path / "fake_lab.py"
    script.write_text(FAKE_SERVER)
    port = server_mod.free_port()
    pidfile = tmp_path / "kernel.pid"
    srv = server_mod.LabServer([sys.executable, str(script), str(port), str(pidfile)],
                               f"http://127.0.0.1:{port}/api", log=tmp_path / "log.txt", timeout=20,
                               grace=2, **kw)
    return srv, port, pidfile


def test_free_port_is_free_and_on_loopback(server_mod):
    port = server_mod.free_port()
    assert 1024 <= port <= 65535
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nothing holds it
        s.listen()


def test_lab_command_has_a_token_a_port_and_loopback(server_mod, tmp_path):
    token = server_mod.new_token()
    assert len(token) >= 32 and token != server_mod.new_token()
    cmd = server_mod.lab_command(tmp_path, 12345, token)
    assert f"--IdentityProvider.token={token}" in cmd and "--port=12345" in cmd and "--ip=127.0.0.1" in cmd
    assert "--ServerApp.port_retries=0" in cmd and "--no-browser" in cmd
    assert not any(a.endswith("token=") for a in cmd)


def test_isolated_env_keeps_jupyter_state_under_home(server_mod, tmp_path):
    env = server_mod.isolated_jupyter_env(tmp_path / "jh", base={"PATH": "/bin"})
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "JUPYTERLAB_SETTINGS_DIR"):
        assert env[name].startswith(str(tmp_path / "jh"))
    assert env["PATH"] == "/bin"


def test_server_and_its_kernels_are_stopped_even_when_the_body_fails(server_mod, tmp_path):
    srv, port, pidfile = fake_server(server_mod, tmp_path)
    with pytest.raises(RuntimeError, match="browser crashed"):
        with srv:
            import urllib.request

            assert urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=5).status == 200
            for _ in range(50):
                if pidfile.exists() and pidfile.read_text():
                    break
                time.sleep(0.1)
            kernel = int(pidfile.read_text())
            assert not gone(kernel) and kernel in srv.descendants()
            raise RuntimeError("browser crashed")
    assert gone(srv.process.pid) and gone(kernel)
    with socket.socket() as s:  # the port is free again: a second run works
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers do (TIME_WAIT)
        s.bind(("127.0.0.1", port))
    srv.stop()  # stopping twice is harmless


def test_server_that_dies_at_start_raises_with_its_log(server_mod, tmp_path):
    srv = server_mod.LabServer([sys.executable, "-c", "import sys; print('no such option'); sys.exit(3)"],
                               f"http://127.0.0.1:{server_mod.free_port()}/api", log=tmp_path / "log.txt",
                               timeout=20)
    with pytest.raises(RuntimeError, match="(?s)exited with 3.*no such option"):
        srv.start()


def test_server_that_never_answers_times_out_and_is_killed(server_mod, tmp_path):
    srv = server_mod.LabServer([sys.executable, "-c", "import time; time.sleep(600)"],
                               f"http://127.0.0.1:{server_mod.free_port()}/api", timeout=1.5, grace=1)
    with pytest.raises(TimeoutError):
        srv.start()
    assert gone(srv.process.pid)


def png(color, size=(40, 30), box=None, box_color=(0, 0, 0)):
    from PIL import Image, ImageDraw

    im = Image.new("RGB", size, color)
    if box:
        ImageDraw.Draw(im).rectangle(box, fill=box_color)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def test_image_difference(e2e):
    a = png("white")
    assert e2e.image_difference(a, png("white")) == 0
    assert e2e.image_difference(a, png((252, 252, 252))) == 0          # below the tolerance
    changed = e2e.image_difference(a, png("white", box=(0, 0, 9, 5)))  # 10 x 6 of 40 x 30 pixels
    assert changed == pytest.approx(60 / 1200) and changed > e2e.CHANGED
    assert e2e.image_difference(a, png("white", size=(40, 31))) == 1.0


def write_nb(path, cells, metadata=None):
    import nbformat

    nb = nbformat.v4.new_notebook(metadata=metadata or {})
    nb.cells = cells
    nbformat.write(nb, path)
    return nb


def test_widget_notebooks_are_found_by_output_or_tag(e2e, tmp_path):
    import nbformat.v4 as v4

    shown = v4.new_code_cell("w", outputs=[v4.new_output(
        "display_data", data={e2e.WIDGET_MIME: {"model_id": "abc", "version_major": 2, "version_minor": 0},
                              "text/plain": "VBox(children=(...))"})])
    write_nb(tmp_path / "10_shown.ipynb", [shown])
    write_nb(tmp_path / "11_tagged.ipynb", [v4.new_code_cell("explorer", metadata={"tags": ["widget"]})])
    write_nb(tmp_path / "12_plain.ipynb", [v4.new_code_cell("1 + 1"), v4.new_markdown_cell("widget")])
    assert [p.name for p in e2e.widget_notebooks(tmp_path)] == ["10_shown.ipynb", "11_tagged.ipynb"]


def test_widget_repr_is_recognised_as_text(e2e):
    assert e2e.WIDGET_AS_TEXT.match("VBox(children=(HBox(children=(Dropdown(description='matrix', …")
    assert e2e.WIDGET_AS_TEXT.match("Dropdown(description='2nd level', options=(...))")
    assert not e2e.WIDGET_AS_TEXT.match("<Figure size 640x480 with 1 Axes>")
    assert not e2e.WIDGET_AS_TEXT.match("Accuracy(full)=0.93")


def test_run_notebooks_writes_labs_metadata_and_finds_missing_widget_state(tmp_path):
    import nbformat.v4 as v4

    run_notebooks = load_script("scripts/run_notebooks.py")
    view = {"application/vnd.jupyter.widget-view+json": {"model_id": "aa", "version_major": 2,
                                                          "version_minor": 0}}
    nb = v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                  "language": "python"}})
    nb.cells = [v4.new_code_cell("x", outputs=[v4.new_output("display_data", data=view)])]
    state = {"aa": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_bb"]}}}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": state}}
    assert run_notebooks.widget_models_missing(nb) == ["bb"]
    nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]["bb"] = {
        "model_name": "DropdownModel", "state": {}}
    assert run_notebooks.widget_models_missing(nb) == []

    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    del nb.cells[0]["id"]
    nb.nbformat_minor = 4
    run_notebooks.lab_metadata(nb, "python3")
    assert nb.metadata["kernelspec"] == {"display_name": spec.display_name, "language": spec.language,
                                         "name": "python3"}
    assert nb.nbformat_minor == 5 and nb.cells[0]["id"]
    json.dumps(nb)  # still plain JSON


HARNESS = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {scripts!r})
    from e2e_server import LabServer, stop_on_signals
    stop_on_signals()
    with LabServer([sys.executable, {script!r}, "{port}", {pidfile!r}], "http://127.0.0.1:{port}/api",
                   timeout=20, grace=2) as srv:
        print(srv.process.pid, flush=True)
        time.sleep(600)
""")


def start_harness(server_mod, tmp_path):
    import subprocess

    from conftest import ROOT

    (tmp_path / "fake_lab.py").write_text(FAKE_SERVER)
    code = HARNESS.format(scripts=str(ROOT / "scripts"), script=str(tmp_path / "fake_lab.py"),
                          port=server_mod.free_port(), pidfile=str(tmp_path / "kernel.pid"))
    harness = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    server_pid = int(harness.stdout.readline())
    return harness, server_pid, int((tmp_path / "kernel.pid").read_text())


def wait_gone(pid, seconds=10):
    deadline = time.monotonic() + seconds
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return gone(pid)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_a_signalled_harness_stops_its_server_and_kernels(server_mod, tmp_path, how):
    import signal

    harness, server_pid, kernel_pid = start_harness(server_mod, tmp_path)
    harness.send_signal(getattr(signal, how))
    assert harness.wait(20) == 128 + getattr(signal, how)
    assert wait_gone(server_pid) and wait_gone(kernel_pid)


def test_a_killed_harness_takes_its_server_along(server_mod, tmp_path):
    harness, server_pid, kernel_pid = start_harness(server_mod, tmp_path)
    harness.kill()  # SIGKILL: no cleanup code runs; the server gets SIGTERM from the OS
    harness.wait(10)
    try:
        assert wait_gone(server_pid)
    finally:
        if not gone(kernel_pid):  # a real Jupyter server shuts its kernels down on SIGTERM
            psutil.Process(kernel_pid).kill()


def test_committed_notebooks_carry_the_kernelspec_lab_writes():
    """Lab rewrites a kernelspec that differs from the kernel's own spec on open, which shows the
    unsaved-changes dot before anything ran (02 had 'Python 3' instead of the spec's name)."""
    import json

    from conftest import ROOT
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        got = json.loads(path.read_text())["metadata"]["kernelspec"]
        want = {"display_name": spec.display_name, "language": spec.language, "name": "python3"}
        assert got == want, path.name
