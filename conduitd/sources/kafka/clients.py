"""Creating librdkafka clients (consumer, producer, admin) at one boundary.

librdkafka checks its properties only when a client is created, and says so with a
KafkaException (_INVALID_ARG and friends). That is the user's configuration being wrong, not a
bug: it becomes a ConfigError naming the property and librdkafka's reason, with every value of
the `client` mapping masked (librdkafka quotes rejected values, and any of them may be a secret),
and, for a mapping read from a config file, the file and the property's line (`configlines`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

from conduitd.configlines import locate_client
from conduitd.core.redact import MASK, redact
from conduitd.errors import ConfigError

_C = TypeVar("_C")

_QUOTED = re.compile(r'"([^"]+)"')

class Repeats(logging.Filter):
    """Lets through the 1st, 10th, 100th, ... occurrence of each message (numbers in it ignored),
    the later ones marked with their count: librdkafka logs a refused connection on every retry,
    hundreds of times a second, and one line says as much as all of them. Counted, not timed."""

    def __init__(self, remember: int = 1024) -> None:
        super().__init__()
        self.remember = remember
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()  # librdkafka logs from the threads that poll its clients

    def count(self, message: str) -> int | None:
        """How often `message` has now been seen if it is to be said, None if not."""
        key = _NUMBERS.sub("#", message)
        with self._lock:
            if key not in self.counts and len(self.counts) >= self.remember:
                self.counts.clear()  # bounded memory: forgetting only lets a line through again
            count = self.counts[key] = self.counts.get(key, 0) + 1
        return count if count == 10 ** (len(str(count)) - 1) else None

    def say(self, message: str) -> str | None:
        """`message` as it is to be said (with its count after the first), None to drop it."""
        count = self.count(message)
        return None if count is None else message if count == 1 else f"{message} (seen {count} times)"

    def reset(self) -> None:
        """Forget every count (the trouble is over: its return is news)."""
        with self._lock:
            self.counts.clear()

    def filter(self, record: logging.LogRecord) -> bool:
        said = self.say(record.getMessage())
        if said is None:
            return False
        record.msg, record.args = said, None
        return True


_NUMBERS = re.compile(r"\d+")

LIBRDKAFKA_LOG = logging.getLogger("conduitd.librdkafka")
"""librdkafka's own log lines go through Python logging (formatted, redacted), not raw to stderr."""
LIBRDKAFKA_LOG.addFilter(Repeats())

_PROBE_LOG = logging.getLogger("conduitd.librdkafka.probe")
_PROBE_LOG.disabled = True  # a probe client only answers "accepted?": its connection attempts are noise


def create_client(factory: Callable[[dict[str, Any]], _C], settings: Mapping[str, Any],
                  client: Mapping[str, Any], where: str) -> _C:
    """`factory(settings)`, a rejected property raised as ConfigError. `client` is the user's
    `client` mapping (the properties that can be wrong); `where` names its owner in the config,
    e.g. 'sources "k"'."""
    full = {"logger": LIBRDKAFKA_LOG, **settings}
    try:
        return factory(full)
    except KafkaException as exc:
        reason = _reason(exc)
        culprit = _culprit(factory, full, client, reason)
        located = locate_client(client, culprit, f"rejected by librdkafka ({where}): {_masked(reason, client)}")
        if located is not None:
            raise ConfigError(located) from None  # file:line: sources[0].client.<property>: ...
        what = f"{where}: client.{culprit}" if culprit else f"{where}: client"
        raise ConfigError(f"{what}: rejected by librdkafka: {_masked(reason, client)}") from None


def _reason(exc: KafkaException) -> str:
    error = exc.args[0] if exc.args else None
    return str(error.str()) if isinstance(error, KafkaError) else str(exc)


def _culprit(factory: Callable[[dict[str, Any]], object], settings: Mapping[str, Any],
             client: Mapping[str, Any], reason: str) -> str | None:
    """The property librdkafka rejected: the one its reason names, else the one without which
    the client is accepted (librdkafka does not always name it, e.g. sasl.jaas.config)."""
    named = [k for k in _QUOTED.findall(reason) if k in client]
    named += sorted((k for k in client if k in reason), key=len, reverse=True)
    if named:
        return str(named[0])
    for key in client:
        try:
            probe = factory({**{k: v for k, v in settings.items() if k != key}, "logger": _PROBE_LOG})
        except KafkaException:
            continue
        _close(probe)
        return str(key)
    return None


def _close(client: object) -> None:
    """Release a probe client (a consumer must be closed; producers and admin clients need not)."""
    close = getattr(client, "close", None)
    if callable(close):
        # A probe that was never used: nothing worth reporting if closing it fails.
        with contextlib.suppress(Exception):
            close()


def _masked(reason: str, client: Mapping[str, Any]) -> str:
    """The reason without any value of the `client` mapping (longest first), then redacted."""
    for value in sorted({str(v) for v in client.values()}, key=len, reverse=True):
        if not value or value in client:
            continue
        # A short value is masked only where quoted: masking "1" everywhere would garble the text.
        reason = reason.replace(value, MASK) if len(value) >= 3 else reason.replace(f'"{value}"', f'"{MASK}"')
    return redact(reason)
