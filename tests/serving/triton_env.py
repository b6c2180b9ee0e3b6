"""The serving tests' own environment: a venv with ``ssp-edge[runtime,serve]`` (nvidia-pytriton pins numpy<2, so it
stays out of the main .venv), created once under the git-ignored build/ folder and reused while setup.cfg is
unchanged (a stamp file), and the real ``tritonserver`` that wheel bundles, started on loopback only.

Every server started here binds 127.0.0.1, is killed at the end of its test, and every request loop is bounded.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / "build" / "serve-venv"
PYVER = f"{sys.version_info[0]}.{sys.version_info[1]}"


def _stamp() -> Path:
    key = hashlib.sha256((REPO / "setup.cfg").read_bytes() + sys.version.encode()).hexdigest()[:16]
    return VENV / f".installed-{key}"


def serve_python() -> Path:
    """The serve venv's python, (re)created when missing or setup.cfg changed (~1-2 min, then cached)."""
    py = VENV / "bin" / "python"
    if _stamp().is_file() and py.is_file():
        return py
    if VENV.exists():
        shutil.rmtree(VENV)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True, timeout=300)
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    r = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "-e", f"{REPO}[runtime,serve]"],
        capture_output=True,
        text=True,
        timeout=1500,
        env=env,
    )
    if r.returncode != 0:
        raise RuntimeError(f"cannot create the serve venv {VENV}: {r.stderr[-3000:]}")
    _stamp().touch()
    return py


def site_packages(py: Path) -> Path:
    out = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.strip()
    return Path(out)


def tritonserver_dir(py: Path) -> Path:
    """A copy of the wheel's tritonserver with the python-backend stub for this interpreter's version (the layout
    PyTriton itself prepares); cached next to the venv stamp."""
    dist = site_packages(py) / "pytriton" / "tritonserver"
    dst = VENV / f"tritonserver-{PYVER}"
    if (dst / "backends" / "python" / "triton_python_backend_stub").is_file():
        return dst
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(dist, dst, ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"))
    shutil.copy(
        dist / "python_backend_stubs" / PYVER / "triton_python_backend_stub",
        dst / "backends" / "python" / "triton_python_backend_stub",
    )
    return dst


def server_env(py: Path) -> dict[str, str]:
    """LD_LIBRARY_PATH: the wheel's bundled libraries and this interpreter's libpython (the stub links it);
    PYTHONPATH: the serve venv's packages and the repository (the stub does not read the venv's .pth files)."""
    libs = [sysconfig.get_config_var("LIBDIR") or "", str(site_packages(py) / "nvidia_pytriton.libs")]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["LD_LIBRARY_PATH"] = ":".join([p for p in libs if p] + [os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(":")
    env["PYTHONPATH"] = f"{REPO}:{site_packages(py)}"
    env["PATH"] = f"{py.parent}:{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    http: int
    grpc: int
    metrics: int
    log: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http}"

    @property
    def grpc_url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc}"

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10) as r:
            return r.read().decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the server and its python-backend stub processes
            self.proc.wait(timeout=30)


def start_tritonserver(
    repo: Path, log: Path, ports: tuple[int, int, int] | None = None, timeout: float = 180.0
) -> Server:
    """tritonserver on 127.0.0.1 with the response cache, waiting (bounded) until every model is ready."""
    py = serve_python()
    ts = tritonserver_dir(py)
    http, grpc, metrics = ports or (free_port(), free_port(), free_port())
    cmd = [
        str(ts / "bin" / "tritonserver"),
        f"--model-repository={repo}",
        f"--backend-directory={ts / 'backends'}",
        f"--cache-directory={ts / 'caches'}",
        "--cache-config=local,size=67108864",
        "--allow-gpu-metrics=false",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
        f"--http-port={http}",
        f"--grpc-port={grpc}",
        f"--metrics-port={metrics}",
        "--exit-timeout-secs=5",
        "--log-verbose=0",
    ]
    f = open(log, "ab")
    proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=server_env(py), start_new_session=True)
    server = Server(proc, http, grpc, metrics, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"tritonserver exited ({proc.returncode}): {log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.5)
    server.stop()
    raise RuntimeError(f"tritonserver not ready after {timeout} s: {log.read_text()[-4000:]}")
