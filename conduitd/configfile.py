"""Read a YAML config file into `Config`; every error names the file, the key path and the line.

Steps: parse YAML keeping each key's line, expand `${VAR}` / `${VAR:-default}` in string values
(`$$` is a literal `$`), validate with pydantic, then check cross references between sections.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from conduitd.config import Config
from conduitd.errors import ConfigError

KeyPath = tuple[str | int, ...]
_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    """Load and validate `path`; raise ConfigError (exit code 2) on any problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config file: {exc.strerror or exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else "?"
        raise ConfigError(f"{file}:{line}: invalid YAML: {exc.problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{file}:1: the config must be a mapping with sources, destinations and resources")
    lines = _key_lines(node) if node is not None else {}
    located = _Locator(file, lines)
    data = _expand(data, (), os.environ if environ is None else environ, located)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, data, located)) from None
    _check_references(config, located)
    return config


class _Locator:
    """Formats `file:line: key.path: message` for a key path."""

    def __init__(self, file: Path, lines: dict[KeyPath, int]) -> None:
        self.file = file
        self.lines = lines

    def at(self, path: KeyPath, message: str) -> str:
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe, 1)
        shown = _dotted(path) or "(top level)"
        return f"{self.file}:{line}: {shown}: {message}"


def _dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _key_lines(node: yaml.Node, path: KeyPath = ()) -> dict[KeyPath, int]:
    lines: dict[KeyPath, int] = {path: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, str(key_node.value))
            lines.update(_key_lines(value_node, key_path))
            lines[key_path] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.update(_key_lines(item, (*path, index)))
    return lines


def _expand(value: Any, path: KeyPath, environ: Mapping[str, str], located: _Locator) -> Any:
    if isinstance(value, dict):
        return {k: _expand(v, (*path, str(k)), environ, located) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, (*path, i), environ, located) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(
            located.at(path, f"environment variable {name} is not set (use ${{{name}:-default}} for a default)")
        )

    return _VAR.sub(substitute, value)


def _describe(exc: ValidationError, data: Any, located: _Locator) -> str:
    messages = []
    for error in exc.errors():
        path = _data_path(error["loc"], data)
        if error["type"] == "extra_forbidden":
            key = str(path[-1]) if path else "?"
            allowed = _allowed_keys(error["loc"][:-1])
            hint = difflib.get_close_matches(key, allowed, n=1)
            suggestion = f"; did you mean '{hint[0]}'?" if hint else (
                f"; known keys: {', '.join(sorted(allowed))}" if allowed else "")
            messages.append(located.at(path, f"unknown key{suggestion}"))
            continue
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "missing":
            message = "required key is missing"
        elif "input" in error and not isinstance(error["input"], dict | list):
            message += f" (got {error['input']!r})" if not _is_secret(path) else ""
        messages.append(located.at(path, message))
    return "\n".join(messages)


def _is_secret(path: KeyPath) -> bool:
    key = str(path[-1]).lower() if path else ""
    return key == "dsn" or any(word in key for word in ("password", "token", "secret", "key"))


def _data_path(loc: tuple[int | str, ...], data: Any) -> KeyPath:
    """Drop the parts of a pydantic location that are not keys of the data (union tags)."""
    path: list[str | int] = []
    current = data
    for part in loc:
        if _has_key(current, part):
            current = current[part]
            path.append(part)
        elif isinstance(current, dict | list):
            continue  # a discriminator tag or model name, not part of the file
        else:
            path.append(part)
            current = None
    return tuple(path)


def _has_key(container: Any, part: int | str) -> bool:
    if isinstance(container, dict):
        return part in container
    return isinstance(container, list) and isinstance(part, int) and 0 <= part < len(container)


def _allowed_keys(loc: tuple[int | str, ...]) -> list[str]:
    """The keys the model at `loc` accepts (field names and aliases), for "did you mean"."""
    candidates: list[type[BaseModel]] = [Config]
    for part in loc:
        if isinstance(part, int):
            continue
        tagged = [m for m in candidates if _type_tag(m) == part]
        if tagged:
            candidates = tagged
            continue
        nxt: list[type[BaseModel]] = []
        for model in candidates:
            for name, field in model.model_fields.items():
                if part in (name, field.alias):
                    nxt.extend(_models_in(field.annotation))
        candidates = nxt
    keys: set[str] = set()
    for model in candidates:
        for name, field in model.model_fields.items():
            keys.add(field.alias or name)
    return sorted(keys)


def _type_tag(model: type[BaseModel]) -> object:
    field = model.model_fields.get("type")
    args = typing.get_args(field.annotation) if field is not None else ()
    return args[0] if len(args) == 1 else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (tuple, list, typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]
    return []


def _check_references(config: Config, located: _Locator) -> None:
    problems = []
    for kind, items in (("sources", config.sources), ("destinations", config.destinations),
                        ("resources", config.resources)):
        if not items:
            problems.append(located.at((kind,), f"at least one entry is needed under '{kind}'"))
        seen: set[str] = set()
        for index, item in enumerate(items):
            if item.name in seen:
                problems.append(located.at((kind, index, "name"), f"duplicate name {item.name!r}"))
            seen.add(item.name)
    source_names = [s.name for s in config.sources]
    destination_names = [d.name for d in config.destinations]
    for index, resource in enumerate(config.resources):
        for key, value, names in (("source", resource.source, source_names),
                                  ("destination", resource.destination, destination_names)):
            if value not in names:
                hint = difflib.get_close_matches(value, names, n=1)
                extra = f"; did you mean '{hint[0]}'?" if hint else f"; defined: {', '.join(names)}"
                problems.append(located.at(("resources", index, key), f"no {key} named {value!r}{extra}"))
    if problems:
        raise ConfigError("\n".join(problems))
