"""The process listening on a local TCP port (Linux /proc), so a benchmark can bill a server it did
not start (a shared Kafka broker or Kinesis server) for the CPU it used.

    pid_listening_on("127.0.0.1:9092") -> 5379 | None
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's state column
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0", "::", ""}


def port_of(address: str) -> tuple[str, int] | None:
    """(host, port) of `host:port`, a URL, or the first of a comma-separated bootstrap list."""
    first = address.split(",")[0].strip()
    parts = urlsplit(first if "://" in first else f"tcp://{first}")
    try:
        port = parts.port
    except ValueError:
        return None
    return (parts.hostname or "", port) if port else None


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def pid_listening_on(address: str) -> int | None:
    """The pid of the local process with a socket listening on `address`'s port, or None (remote
    host, not found, or its /proc entries not readable)."""
    found = port_of(address)
    if found is None or found[0] not in _LOCAL_HOSTS:
        return None
    inodes = _listening_inodes(found[1])
    if not inodes:
        return None
    targets = {f"socket:[{inode}]" for inode in inodes}
    for pid in (e for e in os.listdir("/proc") if e.isdigit()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    return int(pid)
            except OSError:
                continue
    return None
