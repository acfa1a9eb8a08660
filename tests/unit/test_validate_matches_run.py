"""`validate` catches what stops `run` at start, with the same exit code (issue 8, items 13-14):
an output path that cannot be written (under /proc or /sys, where even root creates nothing), a
Kafka DLQ's `client:` properties that librdkafka refuses, and a SQLite `path` that is a file but
not a database. Each case runs `validate` and then `run --once` on the same config, in this
process, with a SQLite destination and a file source (no service needed)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.commands.outputs import SQLITE_MAGIC, kafka_dlq_problem
from conduitd.config import DlqConfig
from conduitd.errors import ConfigError
from tests.helpers.daemon import write_config
from tests.helpers.inprocess import Cli, in_process_cli


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    yield from in_process_cli(capsys)


def config_for(tmp: Path, *, service: dict[str, Any] | None = None, database: Path | None = None,
               records: list[dict[str, Any]] | None = None, **pipeline: Any) -> Path:
    (tmp / "in").mkdir(exist_ok=True)
    (tmp / "in" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records or [{"id": 1}]))
    return write_config(tmp / "conduitd.yaml", {
        "service": service or {},
        "sources": [{"name": "files", "type": "file", "path": str(tmp / "in" / "*.jsonl")}],
        "destinations": [{"name": "db", "type": "sqlite", "path": str(database or tmp / "dest.db")}],
        "resources": [{"name": "events", "source": "files", "destination": "db", **pipeline}],
    })


def both(cli: Cli, config: Path) -> tuple[tuple[int, str], tuple[int, str]]:
    """(validate's exit code and its checks, one `check status detail` a line; run --once's exit
    code and output), each without a traceback."""
    validate_code, out, err = cli("validate", "-c", str(config), "--json")
    run_code, run_out, run_err = cli("--once", "-c", str(config))
    for text in (err, run_err):
        assert "Traceback" not in text, text
    said = "\n".join(f"{c['check']} {c['status']} {c['detail']}" for c in json.loads(out))
    return (validate_code, said + err), (run_code, run_out + run_err)


# -- (1) outputs that cannot be written ------------------------------------------------------------

KERNEL_PATHS = ["/proc/conduitd-manifest.json", "/proc/self/conduitd.json", "/proc/version",
                "/proc/conduitd/deeper/manifest.json", "/sys/conduitd.json", "/sys/kernel/conduitd.json",
                "/proc/sys/conduitd.json"]


@settings(max_examples=14)
@given(path=st.sampled_from(KERNEL_PATHS), output=st.sampled_from(["manifest", "dlq file"]))
def test_an_output_under_proc_or_sys_is_invalid_for_validate_as_for_run(
        path: str, output: str, cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("outputs")
    if output == "manifest":
        config, key = config_for(tmp, service={"manifest_path": path}), "service.manifest_path"
    else:
        config, key = config_for(tmp, dlq={"type": "file", "path": path}), "resources[events].dlq.path"
    (validate_code, said), (run_code, did) = both(cli, config)
    assert run_code == 2, did
    assert validate_code == run_code, said
    assert key in said and key in did
    assert not (tmp / "dest.db").exists() or not sqlite3.connect(tmp / "dest.db").execute(
        "SELECT name FROM sqlite_master WHERE name = 'events'").fetchall()  # run stopped before reading


@pytest.mark.parametrize("obstacle", ["a directory", "a file as its directory"])
def test_an_output_in_the_way_is_invalid_for_both(obstacle: str, cli: Cli, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    if obstacle == "a directory":
        blocker.mkdir()
        path = blocker
    else:
        blocker.write_text("x")
        path = blocker / "manifest.json"
    (validate_code, said), (run_code, did) = both(cli, config_for(tmp_path, service={"manifest_path": str(path)}))
    assert validate_code == run_code == 2, (said, did)


def test_an_unwritable_output_wins_over_a_schema_problem_as_in_run(cli: Cli, tmp_path: Path) -> None:
    """`run` checks its outputs before it reads a record: with a manifest under /proc and a record
    that does not fit the table, it exits 2, and so does `validate` (the data comes later)."""
    database = tmp_path / "dest.db"
    sqlite3.connect(database).execute('CREATE TABLE events ("id" INTEGER)').connection.close()
    config = config_for(tmp_path, service={"manifest_path": "/proc/conduitd.json"}, database=database,
                        records=[{"id": "abc"}])
    (validate_code, said), (run_code, did) = both(cli, config)
    assert "schema: id incompatible" in said  # reported too
    assert validate_code == run_code == 2, (said, did)


# -- (2) a Kafka DLQ's client properties -----------------------------------------------------------

CLIENTS: list[dict[str, Any]] = [
    {"no.such.property": 1}, {"sasl.jaas.config": "x"}, {"compression.codec": "nonsense"}, {"linger.ms": -5},
    {"acks": "sometimes"}, {"message.max.bytes": "lots"}, {"security.protocol": "carrier-pigeon"},
    {"linger.ms": 5}, {"compression.type": "lz4"}, {}, {"client.id": "conduitd-dlq", "acks": "all"},
]


@settings(max_examples=11)
@given(client=st.sampled_from(CLIENTS))
def test_a_kafka_dlq_client_librdkafka_refuses_is_invalid_for_validate_as_for_run(
        client: dict[str, Any], cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("kafka-dlq")
    # Nothing listens there: a producer that was accepted never needs it (no record is rejected).
    config = config_for(tmp, dlq={"type": "kafka", "brokers": "127.0.0.1:9", "topic": "dlq", "client": client})
    (validate_code, said), (run_code, did) = both(cli, config)
    assert run_code in (0, 2), did
    assert validate_code == run_code, (said, did)
    if run_code == 2:  # the same message, naming the property (the run says it from its pre-flight)
        reason = did.rsplit("conduitd: error: ", 1)[1].strip().splitlines()[0]
        reason = reason[reason.index(str(config)):]  # after the pre-flight's `pipeline: check:` prefix
        assert reason in said


@pytest.mark.parametrize("client", CLIENTS)
def test_validate_builds_the_kafka_dlq_producer_as_run_does(client: dict[str, Any]) -> None:
    """`validate` builds the producer without brokers; `run` builds `dlq_sinks.KafkaDlq`: the same
    properties, so the same verdict and message."""
    from conduitd.dlq_sinks import KafkaDlq

    dlq = DlqConfig.model_validate({"type": "kafka", "brokers": "127.0.0.1:9", "topic": "dlq", "client": client})
    try:
        KafkaDlq(dlq)
        refused = None
    except ConfigError as exc:
        refused = str(exc)
    assert kafka_dlq_problem(dlq) == refused


# -- (3) a SQLite path that is not a database ------------------------------------------------------

NOT_A_DATABASE = st.one_of(
    st.binary(min_size=1, max_size=2000).filter(lambda b: not b.startswith(SQLITE_MAGIC)),
    st.sampled_from([b"hello\n", b'{"id": 1}\n', b"id,name\n1,a\n", SQLITE_MAGIC, SQLITE_MAGIC + b"\x00" * 84,
                     b"\x00" * 4096, b"secret-token-123\n"]),
)


@settings(max_examples=15)
@given(content=NOT_A_DATABASE)
def test_a_sqlite_path_that_is_not_a_database_exits_2_for_validate_and_run(
        content: bytes, cli: Cli, tmp_path_factory: pytest.TempPathFactory) -> None:
    tmp = tmp_path_factory.mktemp("notdb")
    database = tmp / "dest.db"
    database.write_bytes(content)
    (validate_code, said), (run_code, did) = both(cli, config_for(tmp, database=database))
    assert validate_code == run_code == 2, (said, did)
    assert "destinations[db].path" in said and "destinations[db].path" in did
    assert "is not a SQLite database" in said and "is not a SQLite database" in did
    assert "secret-token" not in said + did  # the file's content is never quoted
    assert database.read_bytes() == content  # neither command touched it


@pytest.mark.parametrize("kind", ["empty", "a database", "missing"])
def test_a_sqlite_path_run_can_use_passes_both(kind: str, cli: Cli, tmp_path: Path) -> None:
    database = tmp_path / "dest.db"
    if kind == "empty":
        database.write_bytes(b"")
    elif kind == "a database":
        sqlite3.connect(database).execute("CREATE TABLE other (x)").connection.close()
    (validate_code, said), (run_code, did) = both(cli, config_for(tmp_path, database=database))
    assert validate_code == run_code == 0, (said, did)
