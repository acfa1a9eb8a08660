"""A PostgreSQL server of one test's own, so the test may stop and start it (a real outage)
without disturbing the shared server the other tests use. Built with the installed server's
initdb and pg_ctl, run as the `postgres` system user, on a free loopback port, trust auth."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.kafka import free_port


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} not found: is the PostgreSQL server installed?")
    return path


def _as_postgres(*args: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)


@dataclass
class PrivatePostgres:
    directory: Path
    port: int
    settings: tuple[str, ...] = ()
    """Extra server settings (`wal_level=logical`), each passed as `-c`."""

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        subprocess.run(_as_postgres(_bin("pg_ctl"), "-D", str(self.directory / "data"), "-w", "-t", "30",
                                    "-l", str(self.directory / "log"),
                                    "-o", f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
                                    + "".join(f" -c {setting}" for setting in self.settings),
                                    "start"), check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run(_as_postgres(_bin("pg_ctl"), "-D", str(self.directory / "data"), "-w", "-t", "30",
                                    "-m", "fast", "stop"), check=False, capture_output=True)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def create_private_postgres(*settings: str) -> PrivatePostgres:
    """A new cluster, started; `settings` such as `wal_level=logical` go to the server."""
    directory = Path(tempfile.mkdtemp(prefix="conduitd-pg-"))
    os.chmod(directory, 0o755)
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    subprocess.run(_as_postgres(_bin("initdb"), "-D", str(directory / "data"), "-U", "postgres", "--auth=trust",
                                "-E", "UTF8", "--no-sync"), check=True, capture_output=True)
    server = PrivatePostgres(directory, free_port(), settings)
    server.start()
    return server
