"""A second ARouter on loopback, in its own process and data folder, serving its local
engines: a real OpenAI-compatible upstream for the ARouter under test."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

BASE_DIR = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PeerARouter:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.key = ""
        self.process: subprocess.Popen | None = None
        self.env = {
            **os.environ,
            "AROUTER_DATA_DIR": str(data_dir),
            "DJANGO_SETTINGS_MODULE": "arouter.settings",
            "AROUTER_MAX_UPLOAD_MB": "100",
        }
        # Its own SQLite database and catalog, whatever the test run uses.
        for name in ("DATABASE_URL", "REDIS_URL", "AROUTER_CATALOG"):
            self.env.pop(name, None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def _manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=BASE_DIR,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    def start(self) -> "PeerARouter":
        self._manage("migrate", "--noinput")
        self.key = self._manage("createkey", "--team", "upstream").strip().splitlines()[-1]
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "arouter.http_server",  # served as `make serve` serves
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=BASE_DIR,
            env=self.env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the peer ARouter exited at start-up")
            try:
                httpx.get(f"{self.url}/models", headers={"authorization": f"Bearer {self.key}"})
                return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("the peer ARouter did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
