"""Secrets kept out of the config file: a secret key takes plain text or where to fetch it.

    password: {from: env, name: PGPASSWORD}
    password: {from: file, path: /run/secrets/pg-password}    # trailing newline dropped
    password: {from: vault, path: secret/pg, field: password} # a provider from a package

A package adds a provider through the entry-point group `conduitd.credentials`: the entry
point's name is what `from` says, its object a callable taking the other keys of the mapping
(a dict) and returning the secret text; it raises ValueError (or any error) when it cannot.

The value is fetched once, when the config is loaded, registered with `redact.remember` (so it
is masked wherever it could appear) and held as a `SecretStr`. Messages here name the variable,
file or provider, never the value. A secret that must change while conduitd runs (short-lived
tokens) is not supported yet: a restart fetches it again.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BeforeValidator, SecretStr, ValidationInfo

from conduitd.core.redact import remember
from conduitd.oserrors import os_error_text

GROUP = "conduitd.credentials"
_MAX_FILE_BYTES = 1024 * 1024
Provider = Callable[[dict[str, Any]], str]


def resolve(spec: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> str:
    """The secret `spec` ({from: ..., ...}) points to; ValueError saying why not."""
    source = spec.get("from")
    options = {k: v for k, v in spec.items() if k != "from"}
    if source == "env":
        return _from_env(options, os.environ if environ is None else environ)
    if source == "file":
        return _from_file(options)
    if not isinstance(source, str) or not source:
        raise ValueError("'from' must name where the secret comes from: env, file or an installed provider")
    return _from_provider(source, options)


def _only(options: Mapping[str, Any], key: str, source: str) -> str:
    unknown = sorted(str(k) for k in options if k != key)
    if unknown:
        raise ValueError(f"a secret from {source} takes only 'from' and '{key}' (unknown: {', '.join(unknown)})")
    value = options.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"a secret from {source} needs '{key}'")
    return value


def _from_env(options: Mapping[str, Any], environ: Mapping[str, str]) -> str:
    name = _only(options, "name", "env")
    if name not in environ:
        raise ValueError(f"environment variable {name} is not set")
    return environ[name]


def _from_file(options: Mapping[str, Any]) -> str:
    path = Path(_only(options, "path", "file"))
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ValueError(f"cannot read the secret file {str(path)!r}: {os_error_text(exc)}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise ValueError(f"the secret file {str(path)!r} is larger than 1MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"the secret file {str(path)!r} is not UTF-8 text") from None
    return text.removesuffix("\n").removesuffix("\r")


def providers() -> dict[str, importlib.metadata.EntryPoint]:
    """Installed providers by name, besides the built-in env and file."""
    return {p.name: p for p in importlib.metadata.entry_points(group=GROUP)}


def _from_provider(name: str, options: dict[str, Any]) -> str:
    point = providers().get(name)
    if point is None:
        known = ", ".join(["env", "file", *sorted(providers())])
        raise ValueError(f"no credentials provider {name[:40]!r} is installed (known: {known})")
    try:
        provider: Provider = point.load()
        secret = provider(options)
    except Exception as exc:  # noqa: BLE001 - a plugin's error, reported without its traceback
        raise ValueError(f"credentials provider {name!r} failed: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(secret, str):
        raise ValueError(f"credentials provider {name!r} returned {type(secret).__name__}, not text")
    return secret


def _fetched(value: Any, info: ValidationInfo) -> Any:
    """A `{from: ...}` mapping becomes the secret it points to (remembered, so it is masked)."""
    if isinstance(value, Mapping) and "from" in value:
        context = info.context if isinstance(info.context, Mapping) else {}
        value = resolve(value, context.get("environ"))
        remember([value])
    return value


def _secret(value: Any, info: ValidationInfo) -> Any:
    value = _fetched(value, info)
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        remember([str(value)])  # a number is refused below, and its error is redacted too
    return value


Fetched = BeforeValidator(_fetched)
"""On any annotated type: a `{from: ...}` mapping is replaced by the text it points to, which
is masked from then on (a Kafka client property such as sasl.password)."""
SecretText = Annotated[SecretStr, BeforeValidator(_secret)]
"""A secret key of a config model: text, or `{from: env|file|<provider>, ...}`; masked either way."""
