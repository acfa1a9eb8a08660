"""Schema evolution through the real CLI (PostgreSQL; SQLite where it applies): new columns, widening,
hostile names, type changes that fit no widening, the manual/warn/strict policies, removed columns,
`schema` / `schema-compare` and the schema-aware `validate`."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.daemon import conduitd, write_config
from tests.helpers.destinations import Db, postgres, sqlite


@pytest.fixture
def pg(request: pytest.FixtureRequest) -> Db:
    return postgres(request)


@pytest.fixture(params=["postgres", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    return postgres(request) if request.param == "postgres" else sqlite(tmp_path)


def config_for(tmp_path: Path, db: Db, evolution: dict[str, Any] | None = None, *, name: str = "events",
               service: dict[str, Any] | None = None, **pipeline: Any) -> Path:
    (tmp_path / "in").mkdir(exist_ok=True)
    return write_config(tmp_path / "conduitd.yaml", {
        "service": service or {},
        "sources": [{"name": "files", "type": "file", "path": str(tmp_path / "in" / "*.jsonl")}],
        "destinations": [db.destination],
        "resources": [{"name": name, "source": "files", "destination": "db",
                       "schema_evolution": {"migrations_dir": str(tmp_path / "migrations"), **(evolution or {})},
                       **pipeline}],
    })


def append(tmp_path: Path, *records: dict[str, Any]) -> Path:
    path = tmp_path / "in" / "a.jsonl"
    path.parent.mkdir(exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    return path


def once(config: Path, code: int = 0) -> str:
    result = conduitd("--once", "-c", str(config))
    assert result.returncode == code, result.stderr
    return result.stderr


# -- auto ------------------------------------------------------------------------------------


def test_auto_adds_a_new_field_as_a_nullable_column_and_records_it(tmp_path: Path, db: Db) -> None:
    config = config_for(tmp_path, db)
    append(tmp_path, {"id": 1, "n": 10})
    once(config)
    append(tmp_path, {"id": 2, "n": 20, "extra": "x"}, {"id": 3, "n": 30})
    once(config)
    assert db.table("events") == [{"id": 1, "n": 10, "extra": None}, {"id": 2, "n": 20, "extra": "x"},
                                  {"id": 3, "n": 30, "extra": None}]
    text = "text" if db.kind == "postgres" else "TEXT"
    assert db.columns("events")["extra"] == (text, True)
    create, add = db.history()
    assert (create["change"], create["table_name"], create["applied"]) == ("create", "events", True)
    assert add == {"pipeline": "events", "table_name": "events", "change": "add", "column_name": "extra",
                   "old_definition": None, "new_definition": text,
                   "ddl": f"ALTER TABLE {db.name('events')} ADD COLUMN \"extra\" {text}", "applied": True}
    assert db.dlq("events") == []


def test_auto_widens_integer_columns_and_keeps_every_value(tmp_path: Path, pg: Db) -> None:
    pg.execute(f"CREATE TABLE {pg.name('events')} (id integer, big integer, small smallint, ratio bigint)")
    config = config_for(tmp_path, pg)
    append(tmp_path, {"id": 1, "big": 5, "small": 1, "ratio": 7})
    once(config)
    append(tmp_path, {"id": 2, "big": 3_000_000_000, "small": 70_000, "ratio": 2},
           {"id": 3, "big": -3_000_000_000, "small": 2.5, "ratio": 1.25},
           {"id": 4, "big": 2_147_483_647, "small": -32768, "ratio": -3})
    once(config)
    assert pg.columns("events") == {"id": ("integer", True), "big": ("bigint", True),
                                    "small": ("double precision", True), "ratio": ("numeric(38,9)", True)}
    assert pg.table("events") == [
        {"id": 1, "big": 5, "small": 1.0, "ratio": 7},
        {"id": 2, "big": 3_000_000_000, "small": 70_000.0, "ratio": 2},
        {"id": 3, "big": -3_000_000_000, "small": 2.5, "ratio": Decimal("1.25")},
        {"id": 4, "big": 2_147_483_647, "small": -32768.0, "ratio": -3}]
    widened = {h["column_name"]: h for h in pg.history() if h["change"] == "widen"}
    assert {c: (h["old_definition"], h["new_definition"], h["applied"]) for c, h in widened.items()} == {
        "big": ("integer", "bigint", True), "small": ("smallint", "double precision", True),
        "ratio": ("bigint", "numeric(38,9)", True)}
    assert widened["big"]["ddl"] == (f'ALTER TABLE {pg.name("events")} ALTER COLUMN "big" TYPE bigint '
                                     'USING "big"::bigint')
    assert pg.dlq("events") == []


def test_widening_to_double_does_not_round_the_integers_already_stored(tmp_path: Path, pg: Db) -> None:
    config = config_for(tmp_path, pg)
    append(tmp_path, {"id": 1, "n": 9_007_199_254_740_993})
    once(config)
    append(tmp_path, {"id": 2, "n": 2.5})
    once(config)
    values = pg.rows(f"SELECT id, n FROM {pg.name('events')} ORDER BY id")
    assert [r["n"] for r in values] == [Decimal("9007199254740993"), Decimal("2.5")]


def test_integers_beside_fractions_in_one_batch_keep_their_value(tmp_path: Path, pg: Db) -> None:
    config = config_for(tmp_path, pg)
    append(tmp_path, {"id": 1, "n": 9_007_199_254_740_993}, {"id": 2, "n": 2.5})
    once(config)
    values = pg.rows(f"SELECT id, n::text AS n FROM {pg.name('events')} ORDER BY id")
    stored = [Decimal(r["n"]) for r in values] + [Decimal(d["value"]) for d in pg.dlq("events")]
    assert Decimal("9007199254740993") in stored and Decimal("2.5") in stored


HOSTILE = ['a"; DROP TABLE sentinel; --', "with space", 'quo"te', "it's", "ünïcødé ✓", "Mixed Case"]


def test_hostile_names_are_created_exactly_and_nothing_else_happens(tmp_path: Path, db: Db) -> None:
    evil = f'a"; DROP TABLE {db.name("sentinel")}; --'
    names = [evil, *HOSTILE]
    table = 't"; DROP TABLE sentinel; --'
    db.execute(f"CREATE TABLE {db.name('sentinel')} (x integer)")
    config = config_for(tmp_path, db, table=table)
    append(tmp_path, {"id": 1, **{n: f"v{i}" for i, n in enumerate(names[:3])}})
    once(config)  # created with the first three
    append(tmp_path, {"id": 2, **{n: f"v{i}" for i, n in enumerate(names)}})
    once(config)  # the others are added
    assert list(db.columns(table)) == ["id", *names]
    assert db.table(table) == [{"id": 1, **{n: f"v{i}" for i, n in enumerate(names[:3])},
                                **dict.fromkeys(names[3:])},
                               {"id": 2, **{n: f"v{i}" for i, n in enumerate(names)}}]
    assert db.tables() == {"sentinel", table, f"{table}_dlq", "conduitd_checkpoints", "conduitd_schema_history",
                           "conduitd_usage", "conduitd_audit", "conduitd_schema_decisions"}
    assert [(h["change"], h["column_name"]) for h in db.history()] == [
        ("create", None), *[("add", n) for n in names[3:]]]


def test_a_field_name_over_63_bytes_does_not_wedge_the_pipeline(tmp_path: Path, pg: Db) -> None:
    long = "c" * 70
    config = config_for(tmp_path, pg, service={"once_retry_timeout": "1s"})
    append(tmp_path, {"id": 1, long: 5})
    first = conduitd("--once", "-c", str(config))
    if first.returncode == 4:  # refusing the name clearly would be fine too
        assert long[:20] in first.stderr
        return
    assert first.returncode == 0, first.stderr
    append(tmp_path, {"id": 2, long: 6}, {"id": 3})
    second = conduitd("--once", "-c", str(config))
    assert second.returncode == 0, second.stderr
    # The name cannot exist in PostgreSQL: rows with a value there wait in the DLQ, the others are written.
    assert [r["id"] for r in pg.table("events")] == [3]
    dlq = pg.dlq("events")
    assert len(dlq) == 2 and all("longer than the 63 bytes" in r["reason"] for r in dlq)


# -- type changes that no widening holds ------------------------------------------------------


# README: "A value that fits no widening (text "abc" into a bigint) is never forced: its row goes to the
# DLQ (rule cast) with a reason naming the column and type" -- under every policy, also fail and strict.
@pytest.mark.parametrize("evolution", [{}, {"on_type_change": "fail"}, {"mode": "strict"}],
                         ids=["auto", "on_type_change_fail", "strict"])
def test_strings_in_a_bigint_column_go_to_the_dlq(tmp_path: Path, pg: Db, evolution: dict[str, Any]) -> None:
    config = config_for(tmp_path, pg, evolution)
    source = append(tmp_path, {"id": 1, "n": 5})
    once(config)
    append(tmp_path, {"id": 2, "n": "abc"}, {"id": 3, "n": 7}, {"id": 4, "n": "x9"})
    once(config)
    assert pg.columns("events") == {"id": ("bigint", True), "n": ("bigint", True)}
    assert pg.table("events") == [{"id": 1, "n": 5}, {"id": 3, "n": 7}]
    dlq = pg.dlq("events")
    assert [(d["rule"], d["column_name"], d["value"], d["payload"]) for d in dlq] == [
        ("cast", "n", "abc", {"id": 2, "n": "abc"}), ("cast", "n", "x9", {"id": 4, "n": "x9"})]
    assert all("'n'" in d["reason"] and "bigint" in d["reason"] for d in dlq)
    assert [h["change"] for h in pg.history()] == ["create"]
    assert {p: c["offset"] for p, c in pg.checkpoints().items()} == {str(source): source.stat().st_size}


def test_on_type_change_fail_stops_a_widening_with_exit_4(tmp_path: Path, pg: Db) -> None:
    config = config_for(tmp_path, pg, {"on_type_change": "fail"})
    source = append(tmp_path, {"id": 1, "n": 5})
    once(config)
    append(tmp_path, {"id": 2, "n": 2.5})
    stderr = once(config, 4)
    assert "'n'" in stderr and "on_type_change fail" in stderr
    assert pg.columns("events")["n"] == ("bigint", True)
    assert pg.table("events") == [{"id": 1, "n": 5}] and pg.dlq("events") == []
    offsets = {p: c["offset"] for p, c in pg.checkpoints().items()}
    assert offsets == {str(source): len(json.dumps({"id": 1, "n": 5})) + 1}


# -- manual, warn, strict, removed columns ----------------------------------------------------


def test_manual_writes_a_migration_holds_rows_and_replay_brings_them_in(tmp_path: Path, pg: Db) -> None:
    config = config_for(tmp_path, pg, {"mode": "manual"})
    append(tmp_path, {"id": 1, "n": 10})
    once(config)
    append(tmp_path, {"id": 2, "n": 20, "extra": "x"}, {"id": 3, "n": 30}, {"id": 4, "n": 40, "extra": None})
    stderr = once(config)
    ddl = f'ALTER TABLE {pg.name("events")} ADD COLUMN "extra" text'
    (migration,) = (tmp_path / "migrations").glob("*.sql")
    assert migration.read_text() == ddl + ";\n"
    assert "schema changes not applied" in stderr and str(migration) in stderr
    assert list(pg.columns("events")) == ["id", "n"]  # not applied
    assert pg.table("events") == [{"id": 1, "n": 10}, {"id": 3, "n": 30}, {"id": 4, "n": 40}]
    (held,) = pg.dlq("events")
    assert (held["rule"], held["column_name"], held["value"], held["payload"]) == (
        "schema", "extra", "x", {"id": 2, "n": 20, "extra": "x"})
    assert str(tmp_path / "migrations") in held["reason"]
    assert pg.history()[-1] == {"pipeline": "events", "table_name": "events", "change": "add",
                                "column_name": "extra", "old_definition": None, "new_definition": "text",
                                "ddl": ddl, "applied": False}

    pg.execute(migration.read_text())  # the operator applies it
    replay = conduitd("dlq", "replay", "-c", str(config), "-r", "events")
    assert replay.returncode == 0 and "1 now in events, 0 still rejected" in replay.stdout
    assert conduitd("dlq", "replay", "-c", str(config), "-r", "events").returncode == 0
    assert pg.table("events") == [{"id": 1, "n": 10, "extra": None}, {"id": 2, "n": 20, "extra": "x"},
                                  {"id": 3, "n": 30, "extra": None}, {"id": 4, "n": 40, "extra": None}]
    assert pg.dlq("events") == []


def test_warn_writes_the_rows_without_the_new_column_and_says_so(tmp_path: Path, db: Db) -> None:
    config = config_for(tmp_path, db, {"mode": "warn"})
    append(tmp_path, {"id": 1, "n": 10})
    once(config)
    append(tmp_path, {"id": 2, "n": 20, "extra": "x"})
    stderr = once(config)
    assert "WARNING" in stderr and "no column 'extra'" in stderr and "not written" in stderr
    assert db.table("events") == [{"id": 1, "n": 10}, {"id": 2, "n": 20}]
    assert list(db.columns("events")) == ["id", "n"]
    assert db.dlq("events") == [] and [h["change"] for h in db.history()] == ["create"]


@pytest.mark.parametrize("drift", ["added", "removed", "widened"])
def test_strict_stops_on_any_drift_with_exit_4(tmp_path: Path, pg: Db, drift: str) -> None:
    config = config_for(tmp_path, pg, {"mode": "strict"})
    source = append(tmp_path, {"id": 1, "n": 10})
    once(config)
    checkpoints = pg.checkpoints()
    drifted: dict[str, dict[str, Any]] = {"added": {"id": 2, "n": 20, "extra": "x"}, "removed": {"id": 2},
                                          "widened": {"id": 2, "n": 2.5}}
    record = drifted[drift]
    append(tmp_path, record)
    stderr = once(config, 4)
    assert {"added": "'extra'", "removed": "'n'", "widened": "'n'"}[drift] in stderr and "strict" in stderr
    assert pg.table("events") == [{"id": 1, "n": 10}] and pg.dlq("events") == []
    assert pg.columns("events") == {"id": ("bigint", True), "n": ("bigint", True)}
    assert pg.checkpoints() == checkpoints
    assert {p: c["offset"] for p, c in checkpoints.items()} == {str(source): len(json.dumps({"id": 1, "n": 10})) + 1}


def test_on_column_removed(tmp_path: Path, db: Db) -> None:
    config = config_for(tmp_path, db, {"on_column_removed": "fail"})
    append(tmp_path, {"id": 1, "n": 10})
    once(config)
    append(tmp_path, {"id": 2})
    stderr = once(config, 4)
    assert "'n'" in stderr and "on_column_removed fail" in stderr
    assert db.table("events") == [{"id": 1, "n": 10}]

    config_for(tmp_path, db, {"on_column_removed": "warn"})
    stderr = once(config)
    assert "has column(s) 'n' the data lacks" in stderr
    assert db.table("events") == [{"id": 1, "n": 10}, {"id": 2, "n": None}]


# -- schema, schema-compare, validate ---------------------------------------------------------


def test_schema_compare_against_the_live_table(tmp_path: Path, pg: Db) -> None:
    config = config_for(tmp_path, pg)
    append(tmp_path, {"id": 1, "n": 10, "gone": "g"})
    once(config)
    (tmp_path / "in" / "a.jsonl").write_text(json.dumps({"id": 1, "n": 10, "gone": "g"}) + "\n")
    same = conduitd("schema-compare", "events", "-c", str(config))
    assert same.returncode == 0, same.stderr
    assert "no drift" in same.stdout

    (tmp_path / "in" / "a.jsonl").write_text(
        json.dumps({"id": 1, "n": 10, "added": True}) + "\n" + json.dumps({"id": 2, "n": "abc", "added": False}) + "\n")
    drift = conduitd("schema-compare", "events", "-c", str(config))
    assert drift.returncode == 4, drift.stderr
    lines = drift.stdout.splitlines()
    assert any(line.split()[:3] == ["added", "added", "boolean"] for line in lines), drift.stdout
    assert any(line.split()[:3] == ["removed", "gone", "text"] for line in lines), drift.stdout
    assert any(line.split()[:2] == ["changed", "n"] and "'abc'" in line for line in lines), drift.stdout
    as_json = conduitd("schema-compare", "-r", "events", "-c", str(config), "--json")
    assert as_json.returncode == 4, as_json.stderr
    body = json.loads(as_json.stdout)
    assert (body["drifted"], body["missing_table"], body["sampled_rows"]) == (True, False, 2)
    assert [(c["name"], c["type"]) for c in body["added"]] == [("added", "boolean")]
    assert [(c["name"], c["type"]) for c in body["removed"]] == [("gone", "text")]
    (changed,) = body["changed"]
    assert (changed["column"], changed["destination"], changed["source"]) == ("n", "bigint", "text")
    assert "1 of 2" in changed["problem"]
    # nothing was written by looking
    assert pg.table("events") == [{"id": 1, "n": 10, "gone": "g"}]


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_schema_compare_against_a_baseline_file(tmp_path: Path, pg: Db, fmt: str) -> None:
    config = config_for(tmp_path, pg)
    record = {"id": 1, "n": 10, "s": "a", "ts": "2026-01-01T00:00:00Z", "f": 1.5, "doc": {"a": [1]}, "b": True}
    append(tmp_path, record)
    baseline = tmp_path / f"baseline.{fmt}"
    exported = conduitd("schema", "events", "-c", str(config), "--format", fmt, "-o", str(baseline))
    assert exported.returncode == 0, exported.stderr
    document = json.loads(baseline.read_text()) if fmt == "json" else yaml.safe_load(baseline.read_text())
    assert [(c["name"], c["type"]) for c in document["columns"]] == [
        ("id", "bigint"), ("n", "bigint"), ("s", "text"), ("ts", "timestamptz"), ("f", "double precision"),
        ("doc", "jsonb"), ("b", "boolean")]
    same = conduitd("schema-compare", "events", "-c", str(config), "--baseline", str(baseline))
    assert same.returncode == 0, same.stdout + same.stderr
    assert "no drift" in same.stdout and pg.tables() == set()  # no table was needed, none was made

    changed = {**{k: v for k, v in record.items() if k != "b"}, "n": "abc", "new": 1}
    (tmp_path / "in" / "a.jsonl").write_text(json.dumps(changed) + "\n")
    drift = conduitd("schema-compare", "events", "-c", str(config), "--baseline", str(baseline), "--json")
    assert drift.returncode == 4, drift.stderr
    body = json.loads(drift.stdout)
    assert body["against"] == f"baseline {baseline}"
    assert [c["name"] for c in body["added"]] == ["new"]
    assert [c["name"] for c in body["removed"]] == ["b"]
    assert [c["column"] for c in body["changed"]] == ["n"]


def test_validate_exit_codes(tmp_path: Path, pg: Db) -> None:
    config = config_for(tmp_path, pg)
    append(tmp_path, {"id": 1, "n": 10})
    before = conduitd("validate", "-c", str(config))  # no table yet: it will be created
    assert before.returncode == 0, before.stdout + before.stderr
    once(config)
    ok = conduitd("validate", "-c", str(config), "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert {c["status"] for c in json.loads(ok.stdout)} == {"ok"}

    append(tmp_path, {"id": 2, "n": "abc"})
    mismatch = conduitd("validate", "-c", str(config), "--json")
    assert mismatch.returncode == 4, mismatch.stdout + mismatch.stderr
    failing = [c for c in json.loads(mismatch.stdout) if c["status"] != "ok"]
    assert [(c["pipeline"], c["check"], c["status"]) for c in failing] == [("events", "schema: n", "incompatible")]
    assert "bigint" in failing[0]["detail"]
    assert pg.table("events") == [{"id": 1, "n": 10}]  # validate writes nothing
    assert len(pg.checkpoints()) == 1

    down = {**pg.destination, "dsn": "postgresql://u:secretpw@127.0.0.1:1/nodb"}
    unreachable = conduitd("validate", "-c", str(config_for(tmp_path, Db("postgres", down))))
    assert unreachable.returncode == 5, unreachable.stdout + unreachable.stderr
    assert "secretpw" not in unreachable.stdout + unreachable.stderr

    bad = config_for(tmp_path, pg, {"mode": "automatic"})
    broken = conduitd("validate", "-c", str(bad))
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert str(bad) in broken.stderr and "mode" in broken.stderr


def test_validate_writes_nothing(tmp_path: Path, pg: Db) -> None:
    config = config_for(tmp_path, pg)
    append(tmp_path, {"id": 1, "n": 10})
    result = conduitd("validate", "-c", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert pg.tables() == set()
