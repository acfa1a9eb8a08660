"""The systemd notification protocol (`sd_notify`), for `Type=notify` units.

When systemd starts the daemon it sets `NOTIFY_SOCKET`; the daemon then sends `READY=1` once
every pipeline has connected and loaded its checkpoints, `STATUS=...` when a pipeline changes
state, `STOPPING=1` when it starts to drain, and, when the unit sets `WatchdogSec=`,
`WATCHDOG=1` at half that interval from the event loop (a loop that hangs stops the pings and
systemd restarts the service). Without `NOTIFY_SOCKET` every call does nothing.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


class Notifier:
    """Sends datagrams to `$NOTIFY_SOCKET` (a path, or `@name` for the abstract namespace)."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_seconds = _watchdog_seconds(env)
        self._socket: socket.socket | None = None
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def ready(self) -> None:
        self.send("READY=1")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def status(self, text: str) -> None:
        """`STATUS=` as `systemctl status` shows it; sent only when it changes."""
        text = " ".join(text.split())
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def send(self, message: str) -> None:
        if not self.address:
            return
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.sendto(message.encode(), self.address)
        except OSError as exc:  # systemd gone or socket not ours: the daemon goes on regardless
            log.warning("could not notify systemd (%s): %s", message.split("=")[0], exc)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_seconds(env: dict[str, str] | os._Environ[str]) -> float | None:
    """The watchdog interval systemd asked for, if it is meant for this process."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1_000_000
