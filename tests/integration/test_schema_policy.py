"""One schema policy (issue 9, item 4): `validate` and `schema-compare` report the verdict of the
evolution plan `run` uses, as a dry run, so they never disagree with `run`.

Generated cases (a table column's type, the kinds of value the source sends it, a new field, a
column the data lacks, and every `schema_evolution` setting) run `validate`, `schema-compare` and
then `run --once` for real on the same data, against SQLite and PostgreSQL, and compare what the
two looking commands said with what `run` did: its exit code and error, the DDL it applied or
wrote to a migration, and the rows it put in the DLQ for their schema (how many, which column,
which reason)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.daemon import write_config
from tests.helpers.destinations import Db, sqlite
from tests.helpers.inprocess import Cli, in_process_cli

SCHEMA_RULES = ("schema", "cast")

VALUES: list[Any] = [1, -7, 2**31 + 5, 2**40, 2**63 - 1, 2**70, 1.5, -0.25, 1e300, "abc", "42", "", True, None,
                     {"a": 1}, [1, 2], "2026-01-01T00:00:00Z"]
TYPES = {"sqlite": ["INTEGER", "REAL", "TEXT"],
         "postgres": ["smallint", "integer", "bigint", "real", "double precision", "numeric(10,2)", "text", "boolean",
                      "jsonb", "timestamptz"]}
POLICIES = st.fixed_dictionaries({"mode": st.sampled_from(["auto", "manual", "warn", "strict"]),
                                  "on_type_change": st.sampled_from(["widen", "fail", "warn"]),
                                  "on_column_removed": st.sampled_from(["warn", "fail"])})


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    yield from in_process_cli(capsys)


def fresh_postgres(dsn: str) -> Db:
    schema = f"t_{uuid.uuid4().hex[:10]}"
    db = Db("postgres", {"name": "db", "type": "postgres", "dsn": dsn, "schema": schema}, dsn=dsn, schema=schema)
    db.execute(f'CREATE SCHEMA "{schema}"')
    return db


def drop(db: Db) -> None:
    if db.kind == "postgres":
        db.execute(f'DROP SCHEMA "{db.schema}" CASCADE')


def config_for(tmp: Path, db: Db, evolution: dict[str, Any], **pipeline: Any) -> Path:
    (tmp / "in").mkdir(exist_ok=True)
    return write_config(tmp / "conduitd.yaml", {
        "sources": [{"name": "files", "type": "file", "path": str(tmp / "in" / "*.jsonl")}],
        "destinations": [db.destination],
        "resources": [{"name": "events", "source": "files", "destination": "db",
                       "schema_evolution": {"migrations_dir": str(tmp / "migrations"), **evolution}, **pipeline}],
    })


def agree(cli: Cli, tmp: Path, db: Db, records: list[dict[str, Any]], evolution: dict[str, Any],
          columns: dict[str, str] | None, **pipeline: Any) -> None:
    """Run the three commands on `records` (the table made first with `columns`, unless None)
    and check that what validate and schema-compare said is what run did."""
    config = config_for(tmp, db, evolution, **pipeline)
    if columns is not None:
        db.execute(f"CREATE TABLE {db.name('events')} ("
                   + ", ".join(f'"{n}" {t}' for n, t in columns.items()) + ")")
    (tmp / "in" / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))

    validate_code, out, err = cli("validate", "-c", str(config), "--json")
    assert "Traceback" not in err
    checks = json.loads(out)
    compare_code, out, err = cli("schema-compare", "events", "-c", str(config), "--json")
    assert "Traceback" not in err
    body = json.loads(out)
    run_code, _, run_err = cli("--once", "-c", str(config))
    context = f"validate={checks}\nschema-compare={body}\nrun ({run_code}): {run_err[-2000:]}"

    tables = db.tables()
    history = db.history() if "conduitd_schema_history" in tables else []
    dlq = [r for r in (db.dlq("events") if "events_dlq" in tables else []) if r["rule"] in SCHEMA_RULES]
    details = [c["detail"] for c in checks]

    # validate fails (exit 4) exactly when run stops on the schema or dead-letters rows for it.
    assert run_code in (0, 4), context
    assert validate_code == (4 if run_code == 4 or dlq else 0), context

    # run stops (exit 4) exactly where the plan says it stops, for the reason it gives.
    assert (run_code == 4) == (body["stops"] is not None), context
    if run_code == 4:
        assert f"conduitd: error: {body['stops']}" in run_err, context
        assert f"run stops (exit 4): {body['stops']}" in details, context
        assert not history and not dlq, context  # nothing was committed
        assert compare_code == 4, context
        return

    # The DDL run applied, and the DDL it wrote to a migration file, are what was announced.
    applied = [h["ddl"] for h in history if h["applied"]]
    pending = sorted({h["ddl"] for h in history if not h["applied"]})
    assert body["would_apply"] == applied, context
    assert sorted(set(body["migrations"])) == pending, context
    for ddl in applied:
        assert any(f"would apply: {ddl}" in d for d in details), context
    if pending:
        assert (tmp / "migrations").is_dir(), context

    # The rows run dead-lettered for their schema: as many, in the same columns, for the same reasons.
    assert body["dead_lettered_rows"] == len(dlq), context
    verdicts = [e.get("verdict") or e.get("problem") for kind in ("added", "changed", "unstorable")
                for e in body[kind]]
    for (rule, column), count in Counter((r["rule"], r["column_name"]) for r in dlq).items():
        reason = next(r["reason"] for r in dlq if (r["rule"], r["column_name"]) == (rule, column))
        said = f"{count} of {len(records)} sampled rows go to the DLQ: {reason}"
        assert any(said in v for v in verdicts), (said, context)
        assert any(said in d for d in details), (said, context)

    # Columns the data lacks, and fields warn mode leaves out, are reported as run logs them.
    before = set(columns or {})
    fields = {k for r in records for k in r}
    for entry in body["removed"]:
        assert f"'{entry['name']}' the data lacks" in run_err and entry["verdict"] == "rows get NULL there", context
    assert {e["name"] for e in body["removed"]} == (before - fields if columns is not None else set()), context
    for entry in body["added"]:
        if "not written" in entry["verdict"]:
            assert f"has no column {entry['name']!r}: its values are not written" in run_err, context
    drift = bool(history or dlq) or (columns is not None and fields != before)
    assert compare_code == (4 if drift else 0), context


NUMBERS = [v for v in VALUES if isinstance(v, int | float) and not isinstance(v, bool)]
RECORDS = st.one_of(st.lists(st.sampled_from(NUMBERS), min_size=1, max_size=3),  # widenings
                    st.lists(st.sampled_from(VALUES), min_size=1, max_size=4))


def cases(kind: str) -> st.SearchStrategy[tuple[list[dict[str, Any]], dict[str, Any], dict[str, str] | None]]:
    @st.composite
    def build(draw: st.DrawFn) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, str] | None]:
        values = draw(RECORDS)
        extra = draw(st.booleans())
        records = [{"id": i, "n": v, **({"x": f"x{i}"} if extra and i % 2 == 0 else {})}
                   for i, v in enumerate(values)]
        columns = None
        if draw(st.sampled_from([True, True, True, False])):  # mostly an existing table
            columns = {"id": "bigint" if kind == "postgres" else "INTEGER", "n": draw(st.sampled_from(TYPES[kind]))}
            if draw(st.booleans()):
                columns["gone"] = "text" if kind == "postgres" else "TEXT"
        return records, draw(POLICIES), columns

    return build()


@settings(max_examples=20)
@given(case=cases("sqlite"))
def test_validate_and_schema_compare_say_what_run_does_on_sqlite(
        case: tuple[list[dict[str, Any]], dict[str, Any], dict[str, str] | None], cli: Cli,
        tmp_path_factory: pytest.TempPathFactory) -> None:
    records, evolution, columns = case
    tmp = tmp_path_factory.mktemp("policy")
    agree(cli, tmp, sqlite(tmp), records, evolution, columns)


@settings(max_examples=10)
@given(case=cases("postgres"))
def test_validate_and_schema_compare_say_what_run_does_on_postgres(
        case: tuple[list[dict[str, Any]], dict[str, Any], dict[str, str] | None], cli: Cli,
        tmp_path_factory: pytest.TempPathFactory, pg_dsn: str) -> None:
    records, evolution, columns = case
    db = fresh_postgres(pg_dsn)
    try:
        agree(cli, tmp_path_factory.mktemp("policy"), db, records, evolution, columns)
    finally:
        drop(db)


# -- the cases of the issue, named --------------------------------------------------------------


@pytest.fixture
def pg_db(pg_dsn: str) -> Iterator[Db]:
    db = fresh_postgres(pg_dsn)
    yield db
    drop(db)


WIDENINGS = [([1, 2**40], "bigint"), ([1, 1.5], "double precision")]
POLICY_NAMES = {"widen": {}, "fail": {"on_type_change": "fail"}, "warn": {"on_type_change": "warn"},
                "manual": {"mode": "manual"}, "warn mode": {"mode": "warn"}, "strict": {"mode": "strict"}}


@pytest.mark.parametrize("policy", POLICY_NAMES)
@pytest.mark.parametrize(("values", "widened"), WIDENINGS)
def test_an_integer_column_receiving_wider_values(tmp_path: Path, cli: Cli, pg_db: Db, values: list[Any],
                                                  widened: str, policy: str) -> None:
    """The issue's case: an integer column receiving values that need bigint or a float. Where
    `run` widens it (auto, on_type_change widen) `validate` passes and says what it will apply;
    under the other policies it says what `run` does instead (stop, DLQ, migration)."""
    agree(cli, tmp_path, pg_db, [{"id": i, "n": v} for i, v in enumerate(values)], POLICY_NAMES[policy],
          {"id": "bigint", "n": "integer" if widened == "bigint" else "smallint"})
    if policy == "widen":
        assert pg_db.columns("events")["n"][0] == widened
        code, out, _ = cli("validate", "-c", str(tmp_path / "conduitd.yaml"), "--json")
        assert code == 0 and {c["status"] for c in json.loads(out)} == {"ok"}  # widened: nothing left to do


def test_a_unique_key_the_data_lacks_stops_validate_as_it_stops_run(
        tmp_path: Path, cli: Cli, pg_db: Db) -> None:
    agree(cli, tmp_path, pg_db, [{"n": 1}], {}, None, mode="upsert", unique_key=["id"])
    assert not (tmp_path / "migrations").exists()


def test_manual_mode_holds_rows_and_announces_the_migration(tmp_path: Path, cli: Cli) -> None:
    db = sqlite(tmp_path)
    agree(cli, tmp_path, db, [{"id": 1, "n": 1, "x": "a"}, {"id": 2, "n": 2}], {"mode": "manual"},
          {"id": "INTEGER", "n": "INTEGER"})
    (reject,) = db.dlq("events")
    assert reject["payload"] == {"id": 1, "n": 1, "x": "a"} and "apply the migration" in reject["reason"]


def test_strict_mode_stops_with_the_reason_run_gives(tmp_path: Path, cli: Cli) -> None:
    agree(cli, tmp_path, sqlite(tmp_path), [{"id": 1, "n": 1, "x": "a"}], {"mode": "strict"},
          {"id": "INTEGER", "n": "INTEGER"})
