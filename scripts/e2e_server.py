"""A JupyterLab server for the browser tests (`make e2e`): random port, a token, always stopped.

    with LabServer(lab_command(root, port, token), f"http://127.0.0.1:{port}/api") as server:
        ...   # the server answers /api here; on leaving the block (error or not) it and every
              # process it started (kernels included: they run in sessions of their own) are gone

If the harness itself is killed, the server gets SIGTERM from the kernel (PR_SET_PDEATHSIG) and
shuts its kernels down. Nothing here needs a browser, so tests/test_e2e_harness.py checks it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on now (the OS picks it: bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def new_token() -> str:
    """A random server token (the server is never started token-less)."""
    return secrets.token_hex(24)


def isolated_jupyter_env(home: Path, base: dict | None = None) -> dict:
    """Environment for a Lab whose config, data, runtime and settings live under ``home``.

    The user's own Jupyter settings, workspaces and trust database are neither read nor
    changed, so every run starts from what a new learner has.
    """
    env = dict(os.environ if base is None else base)
    for name, sub in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_DATA_DIR", "data"),
                      ("JUPYTER_RUNTIME_DIR", "runtime"), ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                      ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"), ("IPYTHONDIR", "ipython")):
        path = home / sub
        path.mkdir(parents=True, exist_ok=True)
        env[name] = str(path)
    env["JUPYTER_PLATFORM_DIRS"] = "1"
    return env


def install_kernelspec(env: dict, name: str = "minilora", display_name: str = "Python (minilora)",
                       python: str = sys.executable) -> Path:
    """``ipykernel install --name minilora`` into ``env``'s JUPYTER_DATA_DIR (what `make lab` does
    with --user); the kernel is ``python`` (the checkout's .venv, so it imports this minilora)."""
    prefix_dir = Path(env["JUPYTER_DATA_DIR"]) / "kernels" / name
    subprocess.run([python, "-m", "ipykernel", "install", "--name", name, "--display-name", display_name,
                    "--user"], env=env, check=True, stdout=subprocess.DEVNULL)
    spec = json.loads((prefix_dir / "kernel.json").read_text())
    if Path(spec["argv"][0]).resolve() != Path(python).resolve():
        raise RuntimeError(f"kernelspec {name} runs {spec['argv'][0]}, not {python}")
    return prefix_dir


def lab_command(root: Path, port: int, token: str, python: str = sys.executable) -> list[str]:
    """``jupyter lab`` on 127.0.0.1:``port`` with ``token``, serving ``root``, no browser."""
    cmd = [python, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={root}", "--LabApp.expose_app_in_browser=True"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")  # Jupyter refuses root otherwise (containers, CI images)
    return cmd


def _die_with_parent() -> None:
    """In the child, before exec (Linux): SIGTERM it when the process that started it dies, even
    by SIGKILL, so no server outlives the harness (it then shuts its kernels down itself)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def stop_on_signals() -> None:
    """Turn SIGTERM, SIGHUP and SIGINT (even where a shell set it to be ignored) into SystemExit,
    so that ``with LabServer(...)`` blocks unwind and stop their server."""
    def leave(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, leave)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, ConnectionError, OSError):
        return False


class LabServer:
    """Start ``command``; ``__enter__`` returns once ``ready_url`` answers 200, ``__exit__`` stops it.

    Stopping: SIGTERM to the server's process group (it shuts its kernels down), then SIGKILL to
    whatever of it or its descendants is left after ``grace`` seconds. Descendants are found with
    psutil (kernels run in sessions of their own, outside the server's group). If the server dies
    or does not answer within ``timeout`` seconds, the start raises (with the log's tail) after
    stopping everything it started.
    """

    def __init__(self, command: list[str], ready_url: str, env: dict | None = None, log: Path | None = None,
                 timeout: float = 120.0, grace: float = 10.0, cwd: Path | None = None):
        self.command, self.ready_url, self.env, self.log = command, ready_url, env, log
        self.timeout, self.grace, self.cwd = timeout, grace, cwd
        self.process: subprocess.Popen | None = None
        self._log_file = None

    def start(self) -> LabServer:
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.log, "wb")  # noqa: SIM115 (closed in stop)
        out = self._log_file or subprocess.DEVNULL
        self.process = subprocess.Popen(self.command, env=self.env, cwd=self.cwd, stdout=out,
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=_die_with_parent)
        deadline = time.monotonic() + self.timeout
        while not _answers(self.ready_url):
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"server exited with {self.process.returncode} before answering "
                                   f"{self.ready_url}{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"server did not answer {self.ready_url} within {self.timeout:.0f} s"
                                   f"{self._log_tail()}")
            time.sleep(0.25)
        return self

    def _log_tail(self) -> str:
        if self.log is None or not self.log.exists():
            return ""
        tail = self.log.read_text(errors="replace").splitlines()[-20:]
        return "\n--- server log (tail) ---\n" + "\n".join(tail)

    def descendants(self) -> list[int]:
        """Process ids of everything the server started (kernels included), recursively."""
        import psutil

        try:
            return [p.pid for p in psutil.Process(self.process.pid).children(recursive=True)]
        except (psutil.NoSuchProcess, AttributeError):
            return []

    def stop(self) -> None:
        """Stop the server and all its descendants; safe to call twice."""
        import psutil

        if self.process is None:
            return
        pids = [self.process.pid] + self.descendants()
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(self.grace)
            except subprocess.TimeoutExpired:
                pass
        procs = []
        for pid in pids:
            try:
                procs.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
        _, alive = psutil.wait_procs(procs, timeout=0 if self.process.poll() is None else 2)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=5)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
