"""A MariaDB server of the tests' own with the binary log on (ROW format, full row images and
metadata), for log-based change capture: the shared server has `log_bin=OFF`. Built with the
installed `mariadb-install-db` into a temp dir, run as the `mysql` system user (as root) on a free
loopback port, root without a password; stopped by its PID."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.kafka import free_port

BINLOG_SETTINGS = ("--log-bin=binlog", "--binlog-format=ROW", "--binlog-row-image=FULL",
                   "--binlog-row-metadata=FULL", "--server-id=2")


def missing_binaries() -> str | None:
    """Why no private server can be made here, or None."""
    for name in ("mariadb-install-db", "mariadbd"):
        if shutil.which(name) is None and not Path(f"/usr/sbin/{name}").exists():
            return f"{name} not found: install the MariaDB server (apt-get install mariadb-server)"
    return None


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


@dataclass
class PrivateMariadb:
    directory: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> str:
        return str(self.directory / "mysqld.sock")

    def dsn(self, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    def start(self, *settings: str) -> None:
        user = ["--user=mysql"] if os.geteuid() == 0 else []
        log = (self.directory / "server.log").open("ab")
        self.process = subprocess.Popen(
            [_binary("mariadbd"), "--no-defaults", f"--datadir={self.directory / 'data'}", *user,
             f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.socket}",
             f"--pid-file={self.directory / 'mysqld.pid'}", "--skip-name-resolve", "--innodb-buffer-pool-size=32M",
             "--innodb-log-file-size=16M", "--performance-schema=OFF", *BINLOG_SETTINGS, *settings],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 60
        while not Path(self.socket).exists() or not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mariadbd did not start:\n" + (self.directory / "server.log").read_text()[-3000:])
            time.sleep(0.05)

    def _answers(self) -> bool:
        import pymysql

        try:
            pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=2).close()
            return True
        except pymysql.MySQLError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None

    def remove(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # its data goes too: no clean shutdown to wait for
            self.process.wait(timeout=30)
        shutil.rmtree(self.directory, ignore_errors=True)


def create_private_mariadb(*settings: str) -> PrivateMariadb:
    """A new server with the binary log on, started; `settings` go to mariadbd as options."""
    directory = Path(tempfile.mkdtemp(prefix="conduitd-mariadb-"))
    os.chmod(directory, 0o755)
    user = ["--user=mysql"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(directory, "mysql", "mysql")
    subprocess.run([_binary("mariadb-install-db"), "--no-defaults", f"--datadir={directory / 'data'}", *user,
                    "--auth-root-authentication-method=normal", "--skip-test-db"],
                   check=True, capture_output=True)
    server = PrivateMariadb(directory, free_port())
    server.start(*settings)
    return server
