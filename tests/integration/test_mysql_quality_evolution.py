"""The quality, DLQ and schema-evolution tests that run on PostgreSQL and SQLite, run on MySQL/MariaDB
through the real CLI (each test in a database of its own).

The destination-neutral tests of `test_quality_dlq` and `test_evolution` are imported as they
are: pytest runs them here with this module's `db` fixture, a MySQL database. The cases whose
expectations name a dialect's types or DDL are written out below for MySQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import conduitd
from tests.helpers.inprocess import Cli, in_process_cli
from tests.helpers.mysql import MysqlDb, mysql
from tests.integration import test_evolution, test_quality_dlq
from tests.integration.test_evolution import append, config_for, once
from tests.integration.test_evolution import (
    test_hostile_names_are_created_exactly_and_nothing_else_happens as test_hostile_names_are_created_exactly,
)
from tests.integration.test_evolution import test_on_column_removed as test_on_column_removed
from tests.integration.test_evolution import (
    test_warn_writes_the_rows_without_the_new_column_and_says_so as test_warn_writes_the_rows_without_the_new_column,
)
from tests.integration.test_quality_dlq import (
    test_action_fail_exits_3_and_leaves_table_and_checkpoint_as_they_were as test_action_fail_exits_3,
)
from tests.integration.test_quality_dlq import (
    test_dlq_list_and_replay_move_rows_exactly_once as test_dlq_list_and_replay_move_rows_exactly_once,
)
from tests.integration.test_quality_dlq import (
    test_every_check_and_action_sorts_rows_into_table_and_dlq as test_every_check_and_action_sorts_rows,
)
from tests.integration.test_quality_dlq import (
    test_manifest_records_counts_per_rule_and_action as test_manifest_records_counts_per_rule_and_action,
)
from tests.integration.test_quality_dlq import (
    test_replay_leaves_unique_rejects_unless_their_rule_is_named as test_replay_leaves_unique_rejects,
)
from tests.integration.test_quality_dlq import (
    test_rule_rejects_carry_the_offset_after_their_line as test_rule_rejects_carry_the_offset_after_their_line,
)
from tests.integration.test_quality_dlq import test_warned_rows_are_logged as test_warned_rows_are_logged

__all__ = [  # run here on MySQL (see the module docstring)
    "test_action_fail_exits_3", "test_dlq_list_and_replay_move_rows_exactly_once",
    "test_every_check_and_action_sorts_rows", "test_hostile_names_are_created_exactly",
    "test_manifest_records_counts_per_rule_and_action", "test_on_column_removed", "test_replay_leaves_unique_rejects",
    "test_rule_rejects_carry_the_offset_after_their_line", "test_warn_writes_the_rows_without_the_new_column",
    "test_warned_rows_are_logged"]


@pytest.fixture
def db(request: pytest.FixtureRequest) -> MysqlDb:
    return mysql(request)


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
