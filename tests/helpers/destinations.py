"""A destination under test, PostgreSQL or SQLite, looked into from outside the daemon: its
tables, DLQ, schema history and checkpoints (for the tests that run the real CLI on both)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Db:
    """One destination under test and a way to look into it (outside the daemon)."""

    kind: str
    destination: dict[str, Any]
    dsn: str = ""
    schema: str = ""
    path: Path | None = None

    def name(self, table: str) -> str:
        quoted = '"' + table.replace('"', '""') + '"'
        return f'"{self.schema}".{quoted}' if self.kind == "postgres" else quoted

    def rows(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        if self.kind == "postgres":
            return asyncio.run(self._pg(sql, args, fetch=True))
        assert self.path is not None
        db = sqlite3.connect(self.path)
        try:
            cursor = db.execute(sql, args)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            db.close()

    def execute(self, sql: str) -> None:
        if self.kind == "postgres":
            asyncio.run(self._pg(sql, (), fetch=False))
            return
        assert self.path is not None
        db = sqlite3.connect(self.path)
        try:
            db.executescript(sql)
        finally:
            db.close()

    async def _pg(self, sql: str, args: tuple[Any, ...], *, fetch: bool) -> list[dict[str, Any]]:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            if fetch:
                return [dict(r) for r in await conn.fetch(sql, *args)]
            await conn.execute(sql)
            return []
        finally:
            await conn.close()

    def table(self, table: str, order: str = "id") -> list[dict[str, Any]]:
        return self.rows(f"SELECT * FROM {self.name(table)} ORDER BY {order}")

    def dlq(self, table: str) -> list[dict[str, Any]]:
        """The DLQ rows of `table`, oldest first, position and payload parsed."""
        rows = self.rows(f"SELECT * FROM {self.name(table + '_dlq')} ORDER BY id")
        for row in rows:
            row["position"] = json.loads(row["position"]) if row["position"] is not None else None
            row["payload"] = json.loads(row["payload"])
        return rows

    def columns(self, table: str) -> dict[str, tuple[str, bool]]:
        """name -> (type, nullable), in table order."""
        if self.kind == "postgres":
            return {r["attname"]: (r["type"], not r["attnotnull"]) for r in self.rows(
                "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull FROM pg_attribute a "
                "WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
                self.name(table))}
        return {r["name"]: (r["type"], not r["notnull"])
                for r in self.rows(f"PRAGMA table_info({self.name(table)})")}

    def tables(self) -> set[str]:
        if self.kind == "postgres":
            return {r["relname"] for r in self.rows(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = $1 AND c.relkind = 'r'", self.schema)}
        return {r["name"] for r in self.rows("SELECT name FROM sqlite_master WHERE type = 'table'")
                if not r["name"].startswith("sqlite_")}

    def history(self) -> list[dict[str, Any]]:
        rows = self.rows(f"SELECT pipeline, table_name, change, column_name, old_definition, new_definition, ddl, "
                         f"applied FROM {self.name('conduitd_schema_history')} ORDER BY id")
        return [{**r, "applied": bool(r["applied"])} for r in rows]

    def checkpoints(self) -> dict[str, Any]:
        return {r["partition"]: json.loads(r["position"]) for r in self.rows(
            f"SELECT partition, position FROM {self.name('conduitd_checkpoints')}")}


def postgres(request: pytest.FixtureRequest) -> Db:
    dsn = request.getfixturevalue("pg_dsn")
    schema = request.getfixturevalue("pg_schema")
    return Db("postgres", {"name": "db", "type": "postgres", "dsn": dsn, "schema": schema}, dsn=dsn, schema=schema)


def sqlite(tmp_path: Path) -> Db:
    path = tmp_path / "dest.db"
    return Db("sqlite", {"name": "db", "type": "sqlite", "path": str(path)}, path=path)
