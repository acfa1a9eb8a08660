"""A translated config as YAML text, with the translation's notes as comments.

PyYAML's emitter cannot put a comment on a key, so the (simple) config tree is written here:
block mappings, `- ` items, flow lists of scalars, strings always double-quoted (JSON string
syntax is YAML's double-quoted style, so any text round-trips, and `yes`, `1:30` or `0755`
stay text under every YAML schema). A key's notes go after it on its line; the notes of keys that
were dropped go on comment lines inside the mapping they were in.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from conduitd.seedcompat import KeyPath, Translation

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_RESERVED = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def render(translation: Translation, header: str = "") -> str:
    inline: dict[KeyPath, list[str]] = {}
    above: dict[KeyPath, list[str]] = {}
    for note in translation.notes:
        texts = (above if note.removed else inline).setdefault(note.at, [])
        if note.text not in texts:
            texts.append(note.text)
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    lines += [f"# {text}" for text in above.get((), [])]
    data = translation.data
    if isinstance(data, dict) and data:
        lines += _mapping(data, (), 0, inline, above)
    else:
        lines.append(_scalar(data) if not isinstance(data, dict | list) else json.dumps(data))
    return "\n".join(lines) + "\n"


def _mapping(data: dict[Any, Any], at: KeyPath, indent: int, inline: dict[KeyPath, list[str]],
             above: dict[KeyPath, list[str]]) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for position, (key, value) in enumerate(data.items()):
        path = (*at, str(key))
        comment = f"  # {'; '.join(inline[path])}" if path in inline else ""
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{_key(key)}:{comment}")
            lines += _mapping(value, path, indent + 2, inline, above)
        elif isinstance(value, list) and value and not all(_is_scalar(v) for v in value):
            lines.append(f"{pad}{_key(key)}:{comment}")
            lines += _sequence(value, path, indent + 2, inline, above)
        else:
            lines.append(f"{pad}{_key(key)}: {_flow(value)}{comment}")
        if position == 0 and at:  # a dropped key's note under the mapping's first line (a `- ` item's too)
            lines += [f"{pad}# {text}" for text in above.get(at, [])]
    return lines


def _sequence(items: list[Any], at: KeyPath, indent: int, inline: dict[KeyPath, list[str]],
              above: dict[KeyPath, list[str]]) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    for index, item in enumerate(items):
        path = (*at, index)
        if isinstance(item, dict) and item:
            block = _mapping(item, path, indent + 2, inline, above)
            lines.append(f"{pad}- {block[0][indent + 2:]}")
            lines += block[1:]
        elif isinstance(item, list) and item and not all(_is_scalar(v) for v in item):
            lines.append(f"{pad}-")
            lines += _sequence(item, path, indent + 2, inline, above)
        else:
            lines.append(f"{pad}- {_flow(item)}")
    return lines


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, dict | list) or not value


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    return _scalar(value)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)


def _key(key: Any) -> str:
    text = str(key)
    if isinstance(key, str) and _PLAIN_KEY.match(text) and text.lower() not in _RESERVED:
        return text
    return _scalar(key)
