"""Where the parts of a loaded config file are, for errors found only after loading.

librdkafka checks a Kafka `client` property only when a client is created (by `run`, `validate`
or a Kafka DLQ), long after `load_config` returned. `load_config` remembers every `client`
mapping it built together with the way to name its keys (`file:line: key.path: message`), and
`locate_client` finds the mapping again by identity: such an error then reads like every other
config error. A mapping built in code (not from a file) is not found: the caller says what it can.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel

KeyPath = tuple[str | int, ...]
At = Callable[[KeyPath, str], str]
"""Formats `file:line: key.path: message` for a key path of one config file."""

_REMEMBERED: deque[tuple[Mapping[str, Any], KeyPath, At]] = deque(maxlen=1024)
"""(the mapping, its key path, its file's `At`), newest last; bounded: a process loads a config
or two, a test session hundreds."""


def remember_clients(config: BaseModel, at: At) -> None:
    """Remember each `client` mapping of a config just loaded (see the module docstring)."""
    for path, client in _clients(config):
        _REMEMBERED.append((client, path, at))


def locate_client(client: Mapping[str, Any], key: str | None, message: str) -> str | None:
    """`file:line: ...client.KEY: message` for a mapping `remember_clients` saw (the line of
    `key`, or of `client:` when it is None); None for a mapping it did not see."""
    for known, path, at in reversed(_REMEMBERED):
        if known is client:
            return str(at((*path, key) if key is not None else path, message))
    return None


def _clients(config: BaseModel) -> Iterator[tuple[KeyPath, Mapping[str, Any]]]:
    """(key path, mapping) of every `client` field in the config's models, walked iteratively."""
    pending: list[tuple[BaseModel, KeyPath]] = [(config, ())]
    while pending:
        model, path = pending.pop()
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            key = field.alias or name
            if name == "client" and isinstance(value, Mapping):
                yield (*path, key), value
            elif isinstance(value, BaseModel):
                pending.append((value, (*path, key)))
            elif isinstance(value, tuple | list):
                pending.extend((item, (*path, key, index)) for index, item in enumerate(value)
                               if isinstance(item, BaseModel))
