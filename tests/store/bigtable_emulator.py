"""Google's Bigtable emulator (``cbtemulator``) as a test and benchmark helper.

The emulator keeps everything in memory: a restart starts empty.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

EMULATOR_BINARY = Path("/usr/lib/google-cloud-sdk/platform/bigtable-emulator/cbtemulator")
EMULATOR_ENV = "BIGTABLE_EMULATOR_HOST"
PROJECT = "tw-test"
INSTANCE = "tw-instance"


def find_emulator() -> Path | None:
    """The cbtemulator binary, or None when it is not installed."""
    if EMULATOR_BINARY.is_file() and os.access(EMULATOR_BINARY, os.X_OK):
        return EMULATOR_BINARY
    found = shutil.which("cbtemulator")
    return Path(found) if found else None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Emulator:
    """One cbtemulator process on a loopback port. ``start()`` returns once it
    accepts connections; ``kill()`` is SIGKILL (no goodbye to clients);
    ``start()`` again reuses the same port."""

    def __init__(self, binary: Path | None = None, port: int | None = None) -> None:
        binary = binary or find_emulator()
        if binary is None:
            raise FileNotFoundError(f"cbtemulator is not installed (looked for {EMULATOR_BINARY})")
        self.binary = binary
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None
        self._log = tempfile.TemporaryFile()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, table_prefix: str = "", **options: object) -> str:
        """A store URL for this emulator (``emulator_host`` given explicitly)."""
        query = {"emulator_host": self.host, **({"table_prefix": table_prefix} if table_prefix else {}), **options}
        return f"bigtable://{PROJECT}/{INSTANCE}?" + "&".join(f"{k}={v}" for k, v in query.items())

    def start(self, timeout_s: float = 10.0) -> Emulator:
        if self.running:
            return self
        self.process = subprocess.Popen(
            [str(self.binary), "-host", "127.0.0.1", "-port", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                self._log.seek(0)
                raise RuntimeError(f"cbtemulator exited with {self.process.returncode}: {self._log.read()[-2000:]!r}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"cbtemulator did not listen on {self.host} within {timeout_s} s") from None
                time.sleep(0.02)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, and wait until the process is gone."""
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered (a hung server).
        Returns once the process is stopped (signals are delivered asynchronously)."""
        if not self.running:
            return
        self.process.send_signal(signal.SIGSTOP)
        stat = Path(f"/proc/{self.process.pid}/stat")
        deadline = time.monotonic() + 5
        while stat.exists() and time.monotonic() < deadline:
            # The state is the field after the parenthesised command name.
            if stat.read_text().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                return
            time.sleep(0.005)

    def thaw(self) -> None:
        if self.running:
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.thaw()
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()

    def close(self) -> None:
        self.stop()
        self._log.close()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_data_client(host: str, project: str = PROJECT):
    """google-cloud-bigtable's own data client, pointed at an emulator. The
    library only reads the address from the environment, so it is set while
    the client is built and restored right after."""
    import warnings

    from google.cloud.bigtable.data import BigtableDataClient

    saved = os.environ.get(EMULATOR_ENV)
    os.environ[EMULATOR_ENV] = host
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return BigtableDataClient(project=project)
    finally:
        if saved is None:
            del os.environ[EMULATOR_ENV]
        else:
            os.environ[EMULATOR_ENV] = saved
