"""Hostile and nonsense config files: every one is a ConfigError (exit 2) naming the file, the key
and the line, never a traceback and never silently accepted (issue 8, items 11 and 12)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conduitd.configfile import load_config
from conduitd.errors import ConfigError

GOOD = """\
service:
  health_port: 0
sources:
  - name: files
    type: file
    path: data/*.jsonl
destinations:
  - name: wh
    type: postgres
    dsn: "postgresql://app:s3cret@db:5432/wh"
    schema: raw
resources:
  - name: orders
    source: files
    destination: wh
    unique_key: [id]
    batch: {max_rows: 1000, max_bytes: 8MiB, max_wait: 250ms}
"""


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "conduitd.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def error_of(path: Path, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    message = str(caught.value)
    assert re.match(rf"^{re.escape(str(path))}:\d+: ", message), message
    return message


def test_the_good_config_loads(tmp_path: Path) -> None:
    load_config(write(tmp_path, GOOD), {})


def test_a_duplicate_key_names_both_lines(tmp_path: Path) -> None:
    text = GOOD.replace('    schema: raw\n', '    schema: raw\n    dsn: "postgresql://other@elsewhere/x"\n')
    message = error_of(write(tmp_path, text))
    assert ":12: duplicate key 'dsn' (first at line 10)" in message
    assert "elsewhere" not in message and "s3cret" not in message


@pytest.mark.parametrize("first, second", [("true", "True"), ("1", "1.0"), ("a", "'a'")])
def test_keys_equal_once_parsed_are_duplicates(tmp_path: Path, first: str, second: str) -> None:
    text = GOOD.replace("service:\n", f"service:\n  {first}: x\n  {second}: y\n")
    assert "duplicate key" in error_of(write(tmp_path, text))


def test_a_merge_key_may_override_without_being_a_duplicate(tmp_path: Path) -> None:
    text = GOOD.replace("  - name: orders\n", "  - &base\n    name: orders\n") + (
        "  - <<: *base\n    name: orders2\n")
    assert [r.name for r in load_config(write(tmp_path, text), {}).resources] == ["orders", "orders2"]


@pytest.mark.parametrize("content, line", [
    (GOOD.encode().replace(b"data/*.jsonl", b"data/\xff\xfe.jsonl"), 6),
    (GOOD.encode().replace(b"data/*.jsonl", b"data/\x00.jsonl"), 6),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", 1), (b"a: 1\nb: \x00\n", 2),
    (GOOD.encode().replace(b"data/*.jsonl", b"data/\x07.jsonl"), 6),
])
def test_binary_content_is_refused_with_its_line(tmp_path: Path, content: bytes, line: int) -> None:
    path = write(tmp_path, content)
    assert error_of(path).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize("depth", [65, 1000, 20000])
def test_deep_nesting_is_refused(tmp_path: Path, depth: int) -> None:
    for text in ("a: " + "[" * depth + "]" * depth, "a: " + "{b: " * depth + "1" + "}" * depth):
        assert "nested more than" in error_of(write(tmp_path, GOOD + text + "\n"))


def test_an_endless_or_huge_file_is_refused() -> None:
    for path in (Path("/dev/zero"), Path("/dev/urandom")):
        assert error_of(path).startswith(f"{path}:1: ")


def test_a_recursive_alias_is_refused(tmp_path: Path) -> None:
    for text in ("x: &a [1, *a]\n", "x: &a {b: *a}\n", "x: &a\n  - &b [*a]\n"):
        assert "refers to a collection that contains it" in error_of(write(tmp_path, GOOD + text))


def test_an_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    assert "expands to more than" in error_of(write(tmp_path, GOOD + "\n".join(lines) + "\n"))


@pytest.mark.parametrize("old, new, key", [
    ("max_rows: 1000", "max_rows: 0", "resources[0].batch.max_rows"),
    ("max_rows: 1000", "max_rows: true", "resources[0].batch.max_rows"),
    ("max_rows: 1000", "max_rows: 1.5", "resources[0].batch.max_rows"),
    ("max_bytes: 8MiB", "max_bytes: 0", "resources[0].batch.max_bytes"),
    ("max_bytes: 8MiB", "max_bytes: -1", "resources[0].batch.max_bytes"),
    ("max_bytes: 8MiB", "max_bytes: .nan", "resources[0].batch.max_bytes"),
    ("max_bytes: 8MiB", "max_bytes: 0KiB", "resources[0].batch.max_bytes"),
    ("max_wait: 250ms", "max_wait: -1", "resources[0].batch.max_wait"),
    ("max_wait: 250ms", "max_wait: 0", "resources[0].batch.max_wait"),
    ("max_wait: 250ms", "max_wait: .nan", "resources[0].batch.max_wait"),
    ("max_wait: 250ms", "max_wait: .inf", "resources[0].batch.max_wait"),
    ("max_wait: 250ms", "max_wait: -.inf", "resources[0].batch.max_wait"),
    ("max_wait: 250ms", "max_wait: true", "resources[0].batch.max_wait"),
    ("max_wait: 250ms", "max_wait: 1e400", "resources[0].batch.max_wait"),
    ("health_port: 0", "health_port: true", "service.health_port"),
    ("health_port: 0", "health_port: 65536", "service.health_port"),
    ("health_port: 0", "health_port: -1", "service.health_port"),
    ("health_port: 0", "health_host: ''", "service.health_host"),
    ("health_port: 0", "retry_max_wait: -1", "service.retry_max_wait"),
    ("health_port: 0", "retry_max_wait: 0", "service.retry_max_wait"),
    ("health_port: 0", "drain_timeout: .nan", "service.drain_timeout"),
    ("health_port: 0", "manifest_interval: 0s", "service.manifest_interval"),
    ("path: data/*.jsonl", "path: data/*.jsonl\n    read_size: 0", "sources[0].read_size"),
    ("path: data/*.jsonl", "path: data/*.jsonl\n    poll_interval: -1", "sources[0].poll_interval"),
    ("path: data/*.jsonl", "path: data/*.jsonl\n    poll_interval: 0", "sources[0].poll_interval"),
    ("path: data/*.jsonl", "path: data/*.jsonl\n    max_record_bytes: 0", "sources[0].max_record_bytes"),
    ("path: data/*.jsonl", "path: ''", "sources[0].path"),
    ("path: data/*.jsonl", "path: data/*.jsonl\n    encoding: klingon", "sources[0].encoding"),
    ("    unique_key: [id]", "    dlq: {type: kafka, brokers: 'k:99999', topic: t}", "resources[0].dlq.brokers"),
    ("    unique_key: [id]", "    dlq: {type: kafka, brokers: 'k:1,', topic: t}", "resources[0].dlq.brokers"),
    ("    unique_key: [id]", "    dlq: {type: kafka, brokers: 'SSL://k:0', topic: t}", "resources[0].dlq.brokers"),
    ("schema: raw", "schema: ''", "destinations[0].schema"),
    ("schema: raw", 'schema: "a\\0b"', "destinations[0].schema"),
    ("schema: raw", "schema: " + "s" * 64, "destinations[0].schema"),
    ("schema: raw", "schema: raw\n    connect_timeout: 0", "destinations[0].connect_timeout"),
    ("    unique_key: [id]", "    table: ''", "resources[0].table"),
    ("    unique_key: [id]", '    table: "a\\0"', "resources[0].table"),
    ("    unique_key: [id]", "    table: " + "t" * 64, "resources[0].table"),
    ("    unique_key: [id]", "    unique_key: ['']", "resources[0].unique_key[0]"),
    ("    unique_key: [id]", "    deletes: {tombstone: 1}", "resources[0].deletes.tombstone"),
    ("    unique_key: [id]", "    deletes: {soft_delete_column: ''}", "resources[0].deletes.soft_delete_column"),
    ("    unique_key: [id]", "    table: conduitd_checkpoints", "resources[0].table"),
    ("    unique_key: [id]", "    table: Conduitd_Schema_History", "resources[0].table"),
    ("    unique_key: [id]", "    dlq: {table: conduitd_checkpoints}", "resources[0].dlq.table"),
    ("    unique_key: [id]", "    table: x\n    dlq: {table: x}", "resources[0].table"),
])
def test_nonsense_values_name_the_key_and_line(tmp_path: Path, old: str, new: str, key: str) -> None:
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    message = error_of(path)
    assert f": {key}: " in message, message


def test_a_table_named_like_another_pipelines_dlq_table_is_refused(tmp_path: Path) -> None:
    text = GOOD + "  - {name: audit, source: files, destination: wh, table: orders_dlq}\n"
    assert "resources[1].table: table 'orders_dlq' is pipeline 'orders''s DLQ table" in error_of(write(tmp_path, text))


@pytest.mark.parametrize("value", ["${A:-${B}}", "${A", "${}", "x${A:-b", "${A}${", "${1A}", "${A:x}"])
def test_malformed_variables_are_errors(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, GOOD.replace("data/*.jsonl", f"'{value}'"))
    assert f"{path}:6: sources[0].path: malformed variable" in error_of(path, {"A": "a", "B": "b"})


@pytest.mark.parametrize("value, expanded", [
    ("${A}", "a"), ("${NOPE:-d}", "d"), ("${NOPE:-}", ""), ("$$", "$"), ("$${A}", "${A}"),
    ("${NOPE:-a$$b}", "a$b"), ("${NOPE:-x$y}", "x$y"), ("a$b", "a$b"), ("$", "$"), ("{}", "{}"),
])
def test_wellformed_variables_expand(tmp_path: Path, value: str, expanded: str) -> None:
    config = load_config(write(tmp_path, GOOD.replace("data/*.jsonl", f"'d/{value}'")), {"A": "a"})
    assert config.sources[0].path == "d/" + expanded  # type: ignore[union-attr]


def test_strings_for_numbers_and_booleans_still_work_for_variables(tmp_path: Path) -> None:
    text = GOOD.replace("max_rows: 1000", "max_rows: '${ROWS}'").replace(
        "    unique_key: [id]", "    unique_key: [id]\n    deletes: {tombstone: '${TOMB}'}")
    pipeline = load_config(write(tmp_path, text), {"ROWS": "7", "TOMB": "false"}).resources[0]
    assert pipeline.batch.max_rows == 7 and pipeline.deletes.tombstone is False


def test_a_bad_dsn_is_named_without_its_value(tmp_path: Path) -> None:
    for dsn in ("postgresql://app:pa:ss@db:99999/wh", "postgresql://app:s3cret@db:0/wh",
                "host=db password='s3cret", "mysql://app:s3cret@db/wh", "host=db passwort=s3cret"):
        message = error_of(write(tmp_path, GOOD.replace("postgresql://app:s3cret@db:5432/wh", dsn)))
        assert ":10: destinations[0].dsn: " in message and "s3cret" not in message and "pa:ss" not in message


@pytest.mark.parametrize("rule", [
    "{column: amount, check: range, min: true}",
    "{column: amount, check: range, max: .nan}",
    "{column: amount, check: range, min: .inf}",
    "{column: amount, check: range, min: -.inf, max: 5}",
    "{column: '', check: not_null}",
])
def test_a_quality_rule_that_would_judge_nothing_is_refused(tmp_path: Path, rule: str) -> None:
    """A NaN bound passes every row (each comparison is false); a boolean bound means 0 or 1."""
    text = GOOD + f"    quality_checks:\n      - {rule}\n"
    message = error_of(write(tmp_path, text))
    assert "quality_checks[0]" in message


@pytest.mark.parametrize("encoding", ["no-such-codec", "utf-16", "utf-32-le"])
def test_an_encoding_the_file_source_cannot_split_into_lines_is_refused(tmp_path: Path, encoding: str) -> None:
    text = GOOD.replace("    path: data/*.jsonl\n", f"    path: data/*.jsonl\n    encoding: {encoding}\n")
    assert "encoding" in error_of(write(tmp_path, text))


@pytest.mark.parametrize(("key", "where"), [
    ("retry_max_wait", "service"), ("manifest_interval", "service"), ("poll_interval", "source"),
    ("connect_timeout", "destination"),
])
@pytest.mark.parametrize("value", ["0.000001ms", "1ms", "9ms", "0.001"])
def test_an_interval_short_enough_to_spin_is_refused(tmp_path: Path, key: str, where: str, value: str) -> None:
    anchor = {"service": "  health_port: 0\n", "source": "    path: data/*.jsonl\n",
              "destination": "    schema: raw\n"}[where]
    indent = "  " if where == "service" else "    "
    text = GOOD.replace(anchor, f"{anchor}{indent}{key}: {value}\n")
    assert key in error_of(write(tmp_path, text))


def test_ten_milliseconds_is_the_shortest_interval(tmp_path: Path) -> None:
    load_config(write(tmp_path, GOOD.replace("  health_port: 0\n", "  health_port: 0\n  retry_max_wait: 10ms\n")), {})


@pytest.mark.parametrize("key", ["[id, id]", "[id, name, id]"])
def test_a_unique_key_naming_a_column_twice_is_refused(tmp_path: Path, key: str) -> None:
    """PostgreSQL refuses a primary key naming a column twice (42701), which was retried forever."""
    message = error_of(write(tmp_path, GOOD.replace("unique_key: [id]", f"unique_key: {key}")))
    assert "unique_key" in message and "more than once" in message
