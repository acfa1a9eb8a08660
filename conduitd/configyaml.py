"""Read a YAML config file safely: the data, and the line of every key path.

PyYAML accepts things a config must not: a key given twice keeps the last value silently (a
second `dsn:` sends the data to another database), and its composer and constructor recurse,
so deep nesting or an alias inside itself ends in RecursionError, and aliases of aliases can
expand to billions of nodes. Each of these, and a file that is not UTF-8 text, is a ConfigError
naming the file and the line. The checks walk the event stream and the node graph iteratively.

Plain scalars are read by the YAML 1.2 core schema, not PyYAML's YAML 1.1 one: `1:30` is the
text "1:30", not 90 (sexagesimal); `0755` is 755, not 493 (octal); `yes`, `no`, `on` and `off`
are text (a boolean setting still takes them: the models read them as booleans); `1e3` is a
number; a date is text. Booleans are `true`/`false` (also `True`, `TRUE`...), null is `null`,
`~` or nothing, integers are decimal (`0o17` and `0x1F` as in YAML 1.2), floats as in JSON
plus `.inf` and `.nan`.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, ClassVar

import yaml

from conduitd.errors import ConfigError

KeyPath = tuple[str | int, ...]
MAX_DEPTH = 64
"""A config needs about six levels; this is far above that and far below the recursion limit."""
MAX_BYTES = 16 * 1024 * 1024
MAX_NODES = 100_000
"""Nodes after alias expansion: a real config has a few hundred."""
_MERGE = "tag:yaml.org,2002:merge"
_SAFE: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster


def read_yaml(file: Path) -> tuple[Any, dict[KeyPath, int]]:
    """The parsed document and {key path: line}; ConfigError for anything that is not a sane config."""
    try:
        with file.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)  # bounded: `-c /dev/zero` must not eat the memory
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{file}:1: larger than {MAX_BYTES // 1024 // 1024}MiB: not a config file")
    text = _text(file, raw)
    try:
        _check_events(file, text)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            lines = _walk(file, node, loader) if node is not None else {}
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ConfigError(f"{file}:{line}: invalid YAML: {exc.problem or exc.context}") from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(f"{file}:{line}: invalid YAML: character {exc.character!r} is not allowed") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}:1: invalid YAML: {exc.__class__.__name__}") from None
    return data, lines


def _text(file: Path, raw: bytes) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{file}:{line}: not a text file (invalid UTF-8 at byte {exc.start})") from None
    nul = text.find("\x00")
    if nul >= 0:
        raise ConfigError(f"{file}:{text.count(chr(10), 0, nul) + 1}: not a text file (NUL character)")
    return text.removeprefix("\ufeff")


def _check_events(file: Path, text: str) -> None:
    """Nesting depth and aliases that refer to a collection still open (a cycle), from the
    parser's event stream: the parser does not recurse, the composer would."""
    open_anchors: list[str | None] = []
    for event in yaml.parse(text, Loader=_SAFE):
        if isinstance(event, yaml.CollectionStartEvent):
            open_anchors.append(event.anchor)
            if len(open_anchors) > MAX_DEPTH:
                raise ConfigError(f"{file}:{_line(event)}: nested more than {MAX_DEPTH} levels deep")
        elif isinstance(event, yaml.CollectionEndEvent):
            open_anchors.pop()
        elif isinstance(event, yaml.AliasEvent) and event.anchor in open_anchors:
            raise ConfigError(f"{file}:{_line(event)}: alias *{event.anchor} refers to a collection that contains it")


def _line(item: yaml.Event | yaml.Node) -> int:
    return item.start_mark.line + 1 if item.start_mark is not None else 1


class _Loader(_SAFE):  # type: ignore[valid-type,misc]
    """SafeLoader reading plain scalars by the YAML 1.2 core schema (see the module docstring),
    whose constructor errors carry the line (int('x') under a !!int tag raises a bare ValueError
    otherwise)."""

    yaml_implicit_resolvers: ClassVar[dict[str | None, list[tuple[str, re.Pattern[str]]]]] = {}
    """Only the core schema's (filled below): none of YAML 1.1's inherited from SafeLoader."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, AttributeError, LookupError, ArithmeticError) as exc:
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read a value tagged {node.tag} ({exc.__class__.__name__})",
                node.start_mark) from None


_CORE = "tag:yaml.org,2002:"
_DIGITS = "0123456789"
# (tag, pattern, first characters) in the order they are tried: an integer before a float.
_CORE_SCALARS: list[tuple[str, str, list[str]]] = [
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+" + _DIGITS)),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", list("-+." + _DIGITS)),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("merge", r"^<<$", ["<"]),
]
for _tag, _pattern, _first in _CORE_SCALARS:
    _Loader.add_implicit_resolver(_CORE + _tag, re.compile(_pattern), _first)


def _core_int(loader: _Loader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text, 10)


def _core_float(loader: _Loader, node: yaml.ScalarNode) -> float:
    text = str(loader.construct_scalar(node))
    special = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan}
    return special[text.lower()] if text.lower() in special else float(text)


_Loader.add_constructor(_CORE + "int", _core_int)
_Loader.add_constructor(_CORE + "float", _core_float)


def _walk(file: Path, root: yaml.Node, loader: _Loader) -> dict[KeyPath, int]:
    """{key path: line} over the node graph (aliases expanded), refusing duplicate keys and
    documents that expand to more than MAX_NODES nodes."""
    lines: dict[KeyPath, int] = {}
    pending: list[tuple[yaml.Node, KeyPath]] = [(root, ())]
    visited = 0
    while pending:
        node, path = pending.pop()
        visited += 1
        if visited > MAX_NODES:
            raise ConfigError(f"{file}:{_line(node)}: the document expands to more than {MAX_NODES} "
                              "values (aliases of aliases?)")
        lines.setdefault(path, _line(node))
        if isinstance(node, yaml.MappingNode):
            # Merged mappings (`<<: *base`) are walked after the keys written here, which win.
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                    pending.extend((m, path) for m in merged)
            seen: dict[object, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    continue
                key = _key(key_node, loader)
                if key in seen:
                    raise ConfigError(f"{file}:{_line(key_node)}: duplicate key {str(key)[:80]!r} "
                                      f"(first at line {seen[key]}): remove one")
                seen[key] = _line(key_node)
                key_path = (*path, str(key))
                lines.setdefault(key_path, _line(key_node))
                pending.append((value_node, key_path))
        elif isinstance(node, yaml.SequenceNode):
            pending.extend((item, (*path, index)) for index, item in enumerate(node.value))
    return lines


def _key(node: yaml.Node, loader: _Loader) -> object:
    """A key as the constructed mapping compares it (`true` and `True`, `1` and `1.0` collide)."""
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_object(node)
    return ("a collection", id(node))  # never equal to another key; refused by validation
