"""A `foresight-serve` started from Python, for notebooks and tests: the binary on a free
loopback port, stopped when the `with` block ends."""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import tempfile
import time
import weakref
from typing import Any, Iterator


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """Runs `binary` (a built `foresight-serve`) on `registry`, keeping market state and the audit
    log in `state_dir` (a temporary folder by default), with the TOML `config` text if given.

        with LocalServer(repo / "target/debug/foresight-serve", repo / "models") as server:
            client = Client(server.address)
    """

    def __init__(self, binary: str | pathlib.Path, registry: str | pathlib.Path, *, state_dir: str | pathlib.Path | None = None, config: str | None = None):
        self._temp = tempfile.TemporaryDirectory(prefix="foresight-serve-")
        self.state_dir = pathlib.Path(state_dir) if state_dir is not None else pathlib.Path(self._temp.name) / "state"
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.address = f"127.0.0.1:{_free_port()}"
        args = [str(binary), "--registry", str(registry), "--state-dir", str(self.state_dir), "--listen", self.address, "--reload-interval", "0"]
        if config is not None:
            config_file = pathlib.Path(self._temp.name) / "foresight.toml"
            config_file.write_text(config)
            args += ["--config", str(config_file)]
        self._log = open(pathlib.Path(self._temp.name) / "serve.log", "wb")
        self._process = subprocess.Popen(args, stderr=self._log)
        # Stopped even when the caller never calls stop() (a notebook cell that failed): at
        # garbage collection or interpreter exit.
        self._finalizer = weakref.finalize(self, _terminate, self._process, self._log)
        try:
            self._wait()
        except Exception:
            self._finalizer()
            raise

    def _wait(self, seconds: float = 60.0) -> None:
        host, port = self.address.rsplit(":", 1)
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"foresight-serve exited: {self.log()}")
            with socket.socket() as s:
                if s.connect_ex((host, int(port))) == 0:
                    return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"foresight-serve did not start on {self.address}: {self.log()}")

    def log(self) -> str:
        """What the server wrote to stderr so far."""
        return (pathlib.Path(self._temp.name) / "serve.log").read_text(errors="replace")

    @property
    def audit_log(self) -> pathlib.Path:
        return self.state_dir / "audit.jsonl"

    def stop(self) -> None:
        self._finalizer()

    def __enter__(self) -> "LocalServer":
        return self

    def __exit__(self, *_: Any) -> None:
        self.stop()
        self._temp.cleanup()


def _terminate(process: subprocess.Popen, log) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    log.close()


def _record(line: bytes) -> dict | None:
    """A line's record (`<crc32c> <json>`, or plain JSON before checksums), or None."""
    if not line.startswith(b"{"):
        line = line.split(b" ", 1)[1] if b" " in line else b""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def read_audit(path: str | pathlib.Path) -> Iterator[dict]:
    """The audit log's records, oldest first: one dict per margin an arm computed (posted or
    shadow), none when the file does not exist. As the service reads it, a damaged tail (a write
    in progress or cut short: whatever follows the last good line) is left out, and a damaged
    line with good lines after it is an error naming the line. The service checks the lines'
    CRC32C when it opens the file; this reader only parses them."""
    path = pathlib.Path(path)
    if not path.exists():
        return
    damaged = None
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            line = raw[:-1] if raw.endswith(b"\n") else None
            if line is not None and line.startswith(b"#foresight-journal"):
                continue
            record = _record(line) if line else None
            if record is None:
                damaged = damaged or number
                continue
            if damaged is not None:
                raise ValueError(f"{path}: line {damaged} is damaged and good lines follow it")
            yield record
