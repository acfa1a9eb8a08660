"""Rows refused by what PostgreSQL checks late or in user code: a deferred foreign key, a deferred
constraint trigger (both would fail only at COMMIT), and a trigger's RAISE EXCEPTION or ASSERT
(SQLSTATE class P0). Each refused row goes to the DLQ as `refused`, the rest is written, exit 0,
and a second run changes nothing (before: the whole batch failed on every run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.daemon import conduitd, write_config

SETUPS = {
    "deferred_foreign_key": """
        CREATE TABLE {s}.p (id bigint PRIMARY KEY); INSERT INTO {s}.p VALUES (1), (2), (3);
        CREATE TABLE {s}.t (id bigint REFERENCES {s}.p DEFERRABLE INITIALLY DEFERRED, name text);""",
    "deferred_constraint_trigger": """
        CREATE TABLE {s}.t (id bigint, name text);
        CREATE FUNCTION {s}.no_dup() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN IF NEW.name = 'DUP' THEN RAISE check_violation USING MESSAGE = 'late refusal'; END IF;
          RETURN NEW; END $$;
        CREATE CONSTRAINT TRIGGER no_dup AFTER INSERT ON {s}.t DEFERRABLE INITIALLY DEFERRED
          FOR EACH ROW EXECUTE FUNCTION {s}.no_dup();""",
    "raise_exception": """
        CREATE TABLE {s}.t (id bigint, name text);
        CREATE FUNCTION {s}.no_dup() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN IF NEW.name = 'DUP' THEN RAISE EXCEPTION 'rejected by trigger'; END IF; RETURN NEW; END $$;
        CREATE TRIGGER no_dup BEFORE INSERT ON {s}.t FOR EACH ROW EXECUTE FUNCTION {s}.no_dup();""",
    "assert": """
        CREATE TABLE {s}.t (id bigint, name text);
        CREATE FUNCTION {s}.no_dup() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN ASSERT NEW.name <> 'DUP', 'no DUP here'; RETURN NEW; END $$;
        CREATE TRIGGER no_dup BEFORE INSERT ON {s}.t FOR EACH ROW EXECUTE FUNCTION {s}.no_dup();""",
}


@pytest.mark.parametrize("setup", sorted(SETUPS))
async def test_a_row_refused_late_or_by_a_trigger_is_dead_lettered_and_the_rest_written(
        setup: str, tmp_path: Path, pg_dsn: str, pg_schema: str, pg: Any) -> None:
    await pg.execute(SETUPS[setup].format(s=f'"{pg_schema}"'))
    records = [{"id": 1, "name": "a"}, {"id": 999 if setup == "deferred_foreign_key" else 2, "name": "DUP"},
               {"id": 3, "name": "c"}]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    config = write_config(tmp_path / "c.yaml", {
        "sources": [{"name": "f", "type": "file", "path": str(tmp_path / "in.jsonl")}],
        "destinations": [{"name": "d", "type": "postgres", "dsn": pg_dsn, "schema": pg_schema}],
        "resources": [{"name": "r", "source": "f", "destination": "d", "table": "t"}],
    })
    for _ in range(2):
        result = conduitd("--once", "-c", str(config))
        assert result.returncode == 0, result.stderr[-2000:]
        assert "Traceback" not in result.stderr
        rows = await pg.fetch(f'SELECT id, name FROM "{pg_schema}".t ORDER BY id')
        assert [(r["id"], r["name"]) for r in rows] == [(1, "a"), (3, "c")]
        dlq = await pg.fetch(f'SELECT rule, payload FROM "{pg_schema}".t_dlq')
        assert [(r["rule"], json.loads(r["payload"])["name"]) for r in dlq] == [("refused", "DUP")]
