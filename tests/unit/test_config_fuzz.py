"""Config fuzzing: hundreds of generated broken configs (wrong types, unknown keys at every level,
duplicate keys, nonsense numbers, malformed variables, binary content, deep nesting, aliases).
Each is a ConfigError whose message starts with `<file>:<line>: ` (exit code 2 through the CLI),
and none gives a traceback (issue 8, items 11 and 12)."""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.configfile import load_config
from conduitd.errors import ConfigError

GOOD: dict[str, Any] = {
    "service": {"health_port": 0, "log_format": "json", "drain_timeout": "5s", "retry_max_wait": "2s",
                "manifest_interval": "1m"},
    "sources": [
        {"name": "files", "type": "file", "path": "data/*.jsonl", "poll_interval": "1s", "read_size": "1MiB",
         "partial_line_timeout": "2s", "max_record_bytes": 4096},
        {"name": "stream", "type": "kafka", "brokers": "k:9092", "topics": ["t"], "group_id": "g",
         "max_record_bytes": "1MiB", "poll_records": 100, "client": {"session.timeout.ms": 6000}},
    ],
    "destinations": [
        {"name": "wh", "type": "postgres", "dsn": "postgresql://app:s3cret@db:5432/wh", "schema": "raw",
         "connect_timeout": "3s"},
        {"name": "lite", "type": "sqlite", "path": "x.db"},
    ],
    "resources": [
        {"name": "orders", "source": "files", "destination": "wh", "table": "orders", "mode": "upsert",
         "unique_key": ["id"], "batch": {"max_rows": 1000, "max_bytes": "8MiB", "max_wait": "250ms"},
         "dlq": {"type": "table", "table": "orders_rejects"}, "deletes": {"tombstone": True},
         "schema_evolution": {"mode": "auto"}},
        {"name": "events", "source": "stream", "destination": "lite"},
    ],
}
# Numbers: the paths, and whether 0 is allowed there.
NUMBERS: dict[tuple[str | int, ...], bool] = {
    ("service", "health_port"): True, ("service", "drain_timeout"): True, ("service", "retry_max_wait"): False,
    ("service", "manifest_interval"): False, ("sources", 0, "poll_interval"): False,
    ("sources", 0, "read_size"): False, ("sources", 0, "partial_line_timeout"): True,
    ("sources", 0, "max_record_bytes"): False, ("sources", 1, "max_record_bytes"): False,
    ("sources", 1, "poll_records"): False, ("destinations", 0, "connect_timeout"): False,
    ("resources", 0, "batch", "max_rows"): False, ("resources", 0, "batch", "max_bytes"): False,
    ("resources", 0, "batch", "max_wait"): False,
}
TEXTS = [("sources", 0, "path"), ("sources", 1, "brokers"), ("sources", 1, "group_id"), ("destinations", 0, "schema"),
         ("destinations", 1, "path"), ("resources", 0, "table"), ("resources", 0, "dlq", "table"),
         ("resources", 0, "unique_key", 0), ("sources", 0, "name"), ("resources", 1, "name")]
BOOLEANS = [("resources", 0, "deletes", "tombstone")]
SECTIONS = [("service",), ("resources", 0, "batch"), ("resources", 0, "dlq"), ("resources", 0, "deletes"),
            ("resources", 0, "schema_evolution"), ("sources", 0), ("destinations", 0), ("resources", 1)]
LISTS = [("sources",), ("destinations",), ("resources",), ("sources", 1, "topics")]


def mappings(data: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every mapping's path (where an unknown key can go), except free-form `client`."""
    found: list[tuple[str | int, ...]] = []
    if isinstance(data, dict):
        found.append(path)
        for key, value in data.items():
            if key != "client":
                found += mappings(value, (*path, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += mappings(value, (*path, index))
    return found


def put(data: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    target: Any = out
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return out


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


NOT_NUMBERS = st.one_of(
    st.sampled_from([True, False, math.nan, math.inf, -math.inf, [], {}, "soon", "1 parsec", "-1s", "", None,
                     "1e400", 10**40, "nan", "inf"]),
    st.integers(max_value=-1), st.floats(max_value=-1e-9, allow_nan=False),
)
NOT_TEXTS = st.one_of(st.sampled_from(["", "a\x00b", "\x00", [], {}, ["x"], {"a": 1}, True, 3, 2.5]),
                      st.text(min_size=1, max_size=5).map(lambda t: t + "\x00"))
NOT_BOOLEANS = st.sampled_from([0, 1, 2, 0.5, -1, "maybe", [], {}, math.nan])
NOT_SECTIONS = st.sampled_from(["text", 1, True, [1, 2], [], math.nan])
NOT_LISTS = st.sampled_from(["text", 1, {"a": 1}, []])
UNKNOWN_KEYS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).map(lambda k: "zz" + k)
MALFORMED = st.builds(lambda a, bad, b: a + bad + b, st.text(alphabet="ab/.", max_size=4),
                      st.sampled_from(["${", "${A", "${}", "${A:-${B}}", "${A:x}", "${-}", "${A:-{", "${ A}", "${9}"]),
                      st.text(alphabet="ab/.}", max_size=4))


@st.composite
def broken_configs(draw: st.DrawFn) -> str | bytes:
    kind = draw(st.sampled_from(["number", "text", "boolean", "section", "list", "unknown", "duplicate",
                                 "variable", "binary", "nesting", "alias", "tag", "top"]))
    if kind == "number":
        path = draw(st.sampled_from(sorted(NUMBERS, key=str)))
        bad = draw(NOT_NUMBERS if NUMBERS[path] else st.one_of(NOT_NUMBERS, st.just(0), st.just("0s"), st.just(0.0)))
        return dump(put(GOOD, path, bad))
    if kind == "text":
        return dump(put(GOOD, draw(st.sampled_from(TEXTS)), draw(NOT_TEXTS)))
    if kind == "boolean":
        return dump(put(GOOD, draw(st.sampled_from(BOOLEANS)), draw(NOT_BOOLEANS)))
    if kind == "section":
        return dump(put(GOOD, draw(st.sampled_from(SECTIONS)), draw(NOT_SECTIONS)))
    if kind == "list":
        path = draw(st.sampled_from(LISTS))
        bad = draw(NOT_LISTS.filter(lambda v: not isinstance(v, str) or path[-1] != "topics"))  # one topic: a list
        return dump(put(GOOD, path, bad))
    if kind == "unknown":
        path = draw(st.sampled_from(mappings(GOOD)))
        target = copy.deepcopy(GOOD)
        node: Any = target
        for part in path:
            node = node[part]
        node[draw(UNKNOWN_KEYS)] = draw(st.sampled_from([1, "x", [1], {"a": 1}, None]))
        return dump(target)
    if kind == "duplicate":
        lines = dump(GOOD).splitlines()
        keyed = [i for i, line in enumerate(lines) if re.match(r"^\s*(- )?[a-z_]+:", line)]
        index = draw(st.sampled_from(keyed))
        line = lines[index]
        copy_of = re.sub(r"^(\s*)- ", r"\1  ", line)  # the same key again in the same mapping
        lines.insert(index + 1, copy_of)
        return "\n".join(lines) + "\n"
    if kind == "variable":
        return dump(put(GOOD, draw(st.sampled_from(TEXTS[:7])), draw(MALFORMED)))
    if kind == "binary":
        text = dump(GOOD).encode()
        at = draw(st.integers(0, len(text)))
        junk = draw(st.one_of(st.binary(min_size=1, max_size=8).map(lambda b: b + b"\x00"),
                              st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00", b"\x1b[31m", b"\x7f"])))
        return text[:at] + junk + text[at:]
    if kind == "nesting":
        depth = draw(st.integers(65, 3000))
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a: ", "}")]))
        path = draw(st.sampled_from([*TEXTS, ("service", "zz")]))
        return dump(put(GOOD, path, "PLACEHOLDER")).replace("PLACEHOLDER", opener * depth + "1" + closer * depth)
    if kind == "tag":  # a tagged value whose text does not fit its tag (the key is unknown anyway)
        tag = draw(st.sampled_from(["int", "float", "bool", "null", "timestamp", "binary", "set", "omap", "pairs",
                                    "str", "seq", "map", "python/object:os.system", "python/name:os.system"]))
        value = draw(st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), max_size=12))
        return dump(GOOD) + f"zz: !!{tag} {value}\n"
    if kind == "alias":
        recursive = draw(st.sampled_from(["&a [*a]", "&a {b: *a}", "&a [1, [2, *a]]"]))
        return dump(GOOD) + f"zz: {recursive}\n"
    return draw(st.sampled_from(["", "- a\n- b\n", "just text\n", "42\n", "null\n", "[]\n"]))


def check_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    message = str(caught.value)
    assert re.match(rf"^{re.escape(str(path))}:\d+: ", message), message
    assert "Traceback" not in message and "s3cret" not in message
    return message


def test_the_fuzz_base_config_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(dump(GOOD))
    load_config(path, {})


@settings(max_examples=400)
@given(broken_configs())
def test_every_broken_config_is_a_config_error_with_file_and_line(tmp_path_factory: pytest.TempPathFactory,
                                                                  content: str | bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "conduitd.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    check_error(path)


CLI_CASES = [
    dump(put(GOOD, ("resources", 0, "batch", "max_wait"), -1)),
    dump(put(GOOD, ("service", "retry_max_wait"), math.nan)),
    dump(put(GOOD, ("sources", 0, "read_size"), 0)),
    dump(put(GOOD, ("resources", 0, "deletes", "tombstone"), 1)),
    dump(put(GOOD, ("sources", 0, "path"), "${A:-${B}}")),
    dump(GOOD).replace("  schema: raw\n", "  schema: raw\n  dsn: postgresql://other@elsewhere/x\n"),
    dump(GOOD) + "zz: " + "[" * 5000 + "]" * 5000 + "\n",
    dump(GOOD) + "zz: &a [1, *a]\n",
    b"\x7fELF\x02\x01\x01\x00\x00\x00",
    dump(put(GOOD, ("resources", 0, "table"), "conduitd_checkpoints")),
    dump(put(GOOD, ("destinations", 0, "dsn"), "postgresql://app:s3cret@db:99999/wh")),
]


@pytest.mark.parametrize("content", CLI_CASES, ids=range(len(CLI_CASES)))
def test_the_cli_exits_2_with_file_and_line_and_no_traceback(tmp_path: Path, content: str | bytes) -> None:
    path = tmp_path / "conduitd.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    result = subprocess.run([sys.executable, "-m", "conduitd", "validate", "-c", str(path)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert re.match(rf"^conduitd: error: {re.escape(str(path))}:\d+: ", result.stderr), result.stderr
    assert "Traceback" not in result.stderr + result.stdout and "s3cret" not in result.stderr + result.stdout
