"""A live ARouter for the bench scripts: its own data folder, a key, uvicorn on loopback."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
# Settings of the caller's shell that would point the bench server at other state.
ISOLATED = ("DATABASE_URL", "REDIS_URL", "AROUTER_CATALOG", "AROUTER_PRELOAD")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process on port {port} exited ({process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def start_arouter(
    data_dir: Path, env: dict[str, str] | None = None, workers: int = 1
) -> tuple[subprocess.Popen, int, str]:
    """Migrate a fresh data folder, make a key, serve; returns (process, port, raw key)."""
    environment = {k: v for k, v in os.environ.items() if k not in ISOLATED}
    environment.update(AROUTER_DATA_DIR=str(data_dir), LOG_LEVEL="WARNING", **(env or {}))
    manage = [sys.executable, "manage.py"]
    subprocess.run(
        [*manage, "migrate", "--noinput"],
        cwd=BASE_DIR,
        env=environment,
        check=True,
        capture_output=True,
    )
    out = subprocess.run(
        [*manage, "createkey", "--team", "bench"],
        cwd=BASE_DIR,
        env=environment,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    port = free_port()
    # Served as `make serve` serves (uvloop is uvicorn's loop whenever it is installed).
    command = [sys.executable, "-m", "arouter.http_server",
               "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
               "--log-level", "warning"]  # fmt: skip
    process = subprocess.Popen(command, cwd=BASE_DIR, env=environment)
    wait_for_port(port, process)
    return process, port, out.strip().splitlines()[-1]
