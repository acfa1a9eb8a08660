"""The quality, DLQ and schema-evolution tests that run on PostgreSQL and SQLite, run on MySQL/MariaDB
through the real CLI (each test in a database of its own; the CLI runs in this process).

The destination-neutral tests of `test_quality_dlq` and `test_evolution` are taken as they are
(`SHARED`): pytest runs them here with this module's `db` fixture, a MySQL database. The cases
whose expectations name a dialect's types or DDL are written out below for MySQL, and the
generated cases of `test_schema_policy` (validate and schema-compare say what run does) and of
`test_refused_rows` (each refused row in exactly one place) run with MySQL's types and tables.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.runtime.commit import commit_batch
from tests.helpers.daemon import conduitd
from tests.helpers.inprocess import Cli, in_process_cli
from tests.helpers.mysql import MysqlDb, destination, fresh_database, mysql, quoted, reachable_or_skip
from tests.integration import test_evolution, test_quality_dlq
from tests.integration.test_evolution import append, config_for, once
from tests.integration.test_refused_rows import (
    assert_exactly_once,
    generated_rows,
    one_batch,
    pipeline,
    rows_with_faults,
)
from tests.integration.test_schema_policy import POLICIES, RECORDS, agree

# The destination-neutral tests of the PostgreSQL/SQLite modules, run here with this module's `db`
# (pytest collects them from this module's namespace).
SHARED = {
    test_quality_dlq: ["test_every_check_and_action_sorts_rows_into_table_and_dlq",
                       "test_manifest_records_counts_per_rule_and_action",
                       "test_action_fail_exits_3_and_leaves_table_and_checkpoint_as_they_were",
                       "test_dlq_list_and_replay_move_rows_exactly_once",
                       "test_replay_leaves_unique_rejects_unless_their_rule_is_named", "test_warned_rows_are_logged",
                       "test_rule_rejects_carry_the_offset_after_their_line",
                       "test_csv_rows_rejected_after_decoding_carry_the_offset_after_their_line"],
    test_evolution: ["test_warn_writes_the_rows_without_the_new_column_and_says_so", "test_on_column_removed",
                     "test_hostile_names_are_created_exactly_and_nothing_else_happens"],
}
for _module, _names in SHARED.items():
    globals().update({name: getattr(_module, name) for name in _names})


@pytest.fixture
def db(request: pytest.FixtureRequest) -> MysqlDb:
    return mysql(request)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    yield from in_process_cli(capsys)


@pytest.fixture(autouse=True)
def conduitd_in_process(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The real CLI, run in this process (no interpreter start per command: these tests run many)."""
    for cli in in_process_cli(capsys):
        def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
                cli: Cli = cli) -> subprocess.CompletedProcess[str]:
            assert env is None, "an environment needs a process of its own"
            code, out, err = cli(*args)
            return subprocess.CompletedProcess(["conduitd", *args], code, out, err)
        for module in (test_evolution, test_quality_dlq, sys.modules[__name__]):
            monkeypatch.setattr(module, "conduitd", run)
        yield


# -- auto ------------------------------------------------------------------------------------


def test_auto_adds_a_new_field_as_a_nullable_column_and_records_it(tmp_path: Path, db: MysqlDb) -> None:
    config = config_for(tmp_path, db)
    append(tmp_path, {"id": 1, "n": 10})
    once(config)
    append(tmp_path, {"id": 2, "n": 20, "extra": "x"}, {"id": 3, "n": 30})
    once(config)
    assert db.table("events") == [{"id": 1, "n": 10, "extra": None}, {"id": 2, "n": 20, "extra": "x"},
                                  {"id": 3, "n": 30, "extra": None}]
    assert db.columns("events") == {"id": ("bigint(20)", True), "n": ("bigint(20)", True),
                                    "extra": ("longtext", True)}
    create, add = db.history()
    assert (create["change"], create["table_name"], create["applied"]) == ("create", "events", True)
    assert add == {"pipeline": "events", "table_name": "events", "change": "add", "column_name": "extra",
                   "old_definition": None, "new_definition": "LONGTEXT",
                   "ddl": f"ALTER TABLE {db.name('events')} ADD COLUMN `extra` LONGTEXT", "applied": True}
    assert db.dlq("events") == []


def test_auto_widens_a_bigint_column_without_rounding_what_it_holds(tmp_path: Path, db: MysqlDb) -> None:
    """As on PostgreSQL: a fraction arriving in a BIGINT column widens it to an exact decimal, not
    to DOUBLE, which would round the integers already stored."""
    config = config_for(tmp_path, db)
    append(tmp_path, {"id": 1, "n": 9_007_199_254_740_993})
    once(config)
    append(tmp_path, {"id": 2, "n": 2.5})
    once(config)
    assert db.columns("events")["n"] == ("decimal(38,9)", True)
    assert [r["n"] for r in db.table("events")] == [Decimal("9007199254740993"), Decimal("2.5")]
    (widen,) = [h for h in db.history() if h["change"] == "widen"]
    assert (widen["column_name"], widen["old_definition"], widen["new_definition"], widen["applied"]) == (
        "n", "bigint(20)", "DECIMAL(38,9)", True)
    assert db.dlq("events") == []


@pytest.mark.parametrize("evolution", [{}, {"on_type_change": "fail"}, {"mode": "strict"}],
                         ids=["auto", "on_type_change_fail", "strict"])
def test_strings_in_a_bigint_column_go_to_the_dlq(tmp_path: Path, db: MysqlDb, evolution: dict[str, Any]) -> None:
    config = config_for(tmp_path, db, evolution)
    source = append(tmp_path, {"id": 1, "n": 5})
    once(config)
    append(tmp_path, {"id": 2, "n": "abc"}, {"id": 3, "n": 7}, {"id": 4, "n": "x9"})
    once(config)
    assert db.columns("events") == {"id": ("bigint(20)", True), "n": ("bigint(20)", True)}
    assert db.table("events") == [{"id": 1, "n": 5}, {"id": 3, "n": 7}]
    dlq = db.dlq("events")
    assert [(d["rule"], d["column_name"], d["value"], d["payload"]) for d in dlq] == [
        ("cast", "n", "abc", {"id": 2, "n": "abc"}), ("cast", "n", "x9", {"id": 4, "n": "x9"})]
    assert [h["change"] for h in db.history()] == ["create"]
    assert {p: c["offset"] for p, c in db.checkpoints().items()} == {str(source): source.stat().st_size}


# -- manual, strict ----------------------------------------------------------------------------


def test_manual_writes_a_migration_holds_rows_and_replay_brings_them_in(tmp_path: Path, db: MysqlDb) -> None:
    config = config_for(tmp_path, db, {"mode": "manual"})
    append(tmp_path, {"id": 1, "n": 10})
    once(config)
    append(tmp_path, {"id": 2, "n": 20, "extra": "x"}, {"id": 3, "n": 30}, {"id": 4, "n": 40, "extra": None})
    stderr = once(config)
    ddl = f"ALTER TABLE {db.name('events')} ADD COLUMN `extra` LONGTEXT"
    (migration,) = (tmp_path / "migrations").glob("*.sql")
    assert migration.read_text() == ddl + ";\n"
    assert "schema changes not applied" in stderr and str(migration) in stderr
    assert list(db.columns("events")) == ["id", "n"]  # not applied
    assert db.table("events") == [{"id": 1, "n": 10}, {"id": 3, "n": 30}, {"id": 4, "n": 40}]
    (held,) = db.dlq("events")
    assert (held["rule"], held["column_name"], held["value"], held["payload"]) == (
        "schema", "extra", "x", {"id": 2, "n": 20, "extra": "x"})
    assert db.history()[-1] == {"pipeline": "events", "table_name": "events", "change": "add",
                                "column_name": "extra", "old_definition": None, "new_definition": "LONGTEXT",
                                "ddl": ddl, "applied": False}

    db.execute(migration.read_text())  # the operator applies it
    replay = conduitd("dlq", "replay", "-c", str(config), "-r", "events")
    assert replay.returncode == 0 and "1 now in events, 0 still rejected" in replay.stdout, replay.stderr
    assert conduitd("dlq", "replay", "-c", str(config), "-r", "events").returncode == 0  # nothing left: no-op
    assert db.table("events") == [{"id": 1, "n": 10, "extra": None}, {"id": 2, "n": 20, "extra": "x"},
                                  {"id": 3, "n": 30, "extra": None}, {"id": 4, "n": 40, "extra": None}]
    assert db.dlq("events") == []


@pytest.mark.parametrize("drift", ["added", "removed", "widened"])
def test_strict_stops_on_any_drift_with_exit_4(tmp_path: Path, db: MysqlDb, drift: str) -> None:
    config = config_for(tmp_path, db, {"mode": "strict"})
    source = append(tmp_path, {"id": 1, "n": 10})
    once(config)
    drifted: dict[str, dict[str, Any]] = {"added": {"id": 2, "n": 20, "extra": "x"}, "removed": {"id": 2},
                                          "widened": {"id": 2, "n": 2.5}}
    append(tmp_path, drifted[drift])
    stderr = once(config, 4)
    assert {"added": "'extra'", "removed": "'n'", "widened": "'n'"}[drift] in stderr and "strict" in stderr
    assert db.table("events") == [{"id": 1, "n": 10}] and db.dlq("events") == []
    assert db.columns("events") == {"id": ("bigint(20)", True), "n": ("bigint(20)", True)}
    assert {p: c["offset"] for p, c in db.checkpoints().items()} == {
        str(source): len(json.dumps({"id": 1, "n": 10})) + 1}


# -- rows the server refuses -----------------------------------------------------------------


def test_refused_rows_are_isolated_in_upsert_mode_and_the_rest_commits(tmp_path: Path, db: MysqlDb) -> None:
    """A CHECK constraint and a key longer than its VARCHAR(255) refuse single rows of an upsert
    batch: those rows go to the DLQ (rule refused, the server's error number in the reason), every
    other row is merged once, and a second run writes nothing again."""
    config = config_for(tmp_path, db, mode="upsert", unique_key=["k"])
    append(tmp_path, {"k": "a", "n": 1})
    once(config)
    db.execute(f"ALTER TABLE {db.name('events')} ADD CONSTRAINT positive CHECK (n >= 0)")
    rows = [{"k": f"k{i}", "n": -1 if i in (17, 40) else i} for i in range(60)]
    rows[25] = {"k": "x" * 300, "n": 25}
    append(tmp_path, {"k": "a", "n": 2}, *rows, {"k": "a", "n": 3})
    once(config)
    stored = {r["k"]: r["n"] for r in db.table("events", order="k")}
    assert stored == {"a": 3, **{r["k"]: r["n"] for i, r in enumerate(rows) if i not in (17, 25, 40)}}
    dlq = db.dlq("events")
    assert sorted((d["payload"]["k"][:5], d["rule"]) for d in dlq) == [
        ("k17", "refused"), ("k40", "refused"), ("xxxxx", "refused")]
    assert all(("4025" in d["reason"] or "3819" in d["reason"]) for d in dlq if d["payload"]["n"] < 0)
    assert "1406" in next(d["reason"] for d in dlq if d["payload"]["n"] == 25)
    once(config)
    assert len(db.table("events", order="k")) == len(stored) and len(db.dlq("events")) == 3


# -- validate and schema-compare say what run does (test_schema_policy's generated cases) -------

MYSQL_TYPES = ["TINYINT", "SMALLINT", "INT", "BIGINT", "FLOAT", "DOUBLE", "DECIMAL(10,2)", "LONGTEXT",
               "BOOLEAN", "JSON", "DATETIME(6)"]


@st.composite
def mysql_cases(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, str] | None]:
    """`test_schema_policy.cases` with MySQL's column types."""
    values = draw(RECORDS)
    extra = draw(st.booleans())
    records = [{"id": i, "n": v, **({"x": f"x{i}"} if extra and i % 2 == 0 else {})} for i, v in enumerate(values)]
    columns = None
    if draw(st.sampled_from([True, True, True, False])):  # mostly an existing table
        columns = {"id": "BIGINT", "n": draw(st.sampled_from(MYSQL_TYPES))}
        if draw(st.booleans()):
            columns["gone"] = "LONGTEXT"
    return records, draw(POLICIES), columns


@settings(max_examples=15, deadline=None)
@given(case=mysql_cases())
def test_validate_and_schema_compare_say_what_run_does(
        case: tuple[list[dict[str, Any]], dict[str, Any], dict[str, str] | None], cli: Cli,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    records, evolution, columns = case
    reachable_or_skip()
    with fresh_database() as database:
        db = MysqlDb("mysql", destination(database), schema=database)
        agree(cli, tmp_path_factory.mktemp("policy"), db, records, evolution, columns)


# -- generated refused rows (test_refused_rows' generated cases) ------------------------------

MYSQL_TABLE = ("CREATE TABLE {}.orders (id BIGINT PRIMARY KEY, v BIGINT, name VARCHAR(8) NOT NULL, row_no BIGINT, "
               "CONSTRAINT v_not_negative CHECK (v >= 0)) ENGINE=InnoDB")


@settings(max_examples=25, deadline=None)
@given(faults=rows_with_faults)
def test_generated_bad_rows_each_land_in_exactly_one_place(faults: list[set[str]]) -> None:
    """Each generated row (good, or refused by the server in one or two ways) is in exactly one of
    the table or the DLQ, with the server's reason naming one of its faults."""
    reachable_or_skip()
    rows, existing = generated_rows(faults)
    rows = rows.rename_columns(["id", "v", "name", "row_no"])
    with fresh_database() as database:
        db = MysqlDb("mysql", destination(database), schema=database)
        db.execute(MYSQL_TABLE.format(quoted(database)))
        for i in existing:
            db.execute(f"INSERT INTO {db.name('orders')} VALUES ({i}, 7, 'old', -1)")
        asyncio.run(commit(database, rows))
        written = [r["row_no"] for r in db.rows(f"SELECT row_no FROM {db.name('orders')} WHERE row_no >= 0")]
        dlq = [(int(json.loads(r["payload"])["row_no"]), r["reason"], r["column_name"])
               for r in db.rows(f"SELECT payload, reason, column_name FROM {db.name('orders_dlq')}")]
    # MySQL names the primary key PRIMARY; its messages name the column ('name') and the CHECK.
    assert_exactly_once(faults, written, dlq, {"orders_pkey": "PRIMARY"})


async def commit(database: str, rows: pa.Table) -> None:
    """One batch of `rows` into `orders`, committed through the destination."""
    from conduitd.destinations.mysql.destination import MysqlDestination
    from conduitd.destinations.mysql.settings import MysqlDestinationConfig

    res = pipeline()
    d = MysqlDestination(MysqlDestinationConfig.model_validate(destination(database, "d")))
    await d.open()
    try:
        await d.setup(res)
        await commit_batch(d, res, one_batch(rows))
    finally:
        await d.close()
