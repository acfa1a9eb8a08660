"""`.env` in the working directory, as the seed tool (Conduit Core) read it: `NAME=value` lines
that fill in variables the environment does not set (the environment wins).

Read here rather than by python-dotenv (one small format, no new dependency): blank lines and
`#` comments are skipped, `export NAME=value` is allowed, a value in single quotes is taken as
written, one in double quotes has `\\n`, `\\t`, `\\"` and `\\\\` escapes, an unquoted value ends at
` #`. A line that is none of these is an error naming the file and the line (never its value).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from conduitd.errors import ConfigError

_LINE = re.compile(r"^\s*(?:export\s+)?(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*=\s*(?P<value>.*?)\s*$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
MAX_BYTES = 1024 * 1024


def read_dotenv(path: Path) -> dict[str, str]:
    """The variables `path` sets; {} when there is no such file."""
    try:
        raw = path.read_bytes()[: MAX_BYTES + 1]
    except (FileNotFoundError, IsADirectoryError):
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ConfigError(f"{path}:1: larger than 1MiB: not a .env file")
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text") from None
    found: dict[str, str] = {}
    for number, line_text in enumerate(text.splitlines(), 1):
        if not line_text.strip() or line_text.lstrip().startswith("#"):
            continue
        match = _LINE.match(line_text)
        if match is None:
            raise ConfigError(f"{path}:{number}: expected NAME=value")
        found[match["name"]] = _value(match["value"], path, number)
    return found


def _value(text: str, path: Path, number: int) -> str:
    if text[:1] in ("'", '"'):
        quote = text[0]
        end = _closing(text, quote)
        if end is None:
            raise ConfigError(f"{path}:{number}: the value's {quote} is not closed")
        rest = text[end + 1:].strip()
        if rest and not rest.startswith("#"):
            raise ConfigError(f"{path}:{number}: text after the quoted value")
        inner = text[1:end]
        return inner if quote == "'" else re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[0]), inner)
    return re.split(r"\s+#", text, maxsplit=1)[0]


def _closing(text: str, quote: str) -> int | None:
    index = 1
    while index < len(text):
        if text[index] == "\\" and quote == '"':
            index += 2
            continue
        if text[index] == quote:
            return index
        index += 1
    return None


def with_dotenv(environ: Mapping[str, str], directory: Path | None = None) -> dict[str, str]:
    """`environ` with the variables of `.env` in `directory` (default: the working directory) that
    it does not set."""
    return {**read_dotenv((directory or Path.cwd()) / ".env"), **environ}
