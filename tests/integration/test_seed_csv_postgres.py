"""A Conduit Core (seed tool) config, CSV -> PostgreSQL with its connection fields, `.env` and
`$VAR`, run unchanged by `conduitd --once` (issue 12, item 1): the rows land in the table."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.asyncio


async def test_a_seed_csv_to_postgresql_config_runs_once(tmp_path: Path, pg_dsn: str, pg_schema: str,
                                                         pg: object) -> None:
    dsn = urlsplit(pg_dsn)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "users.csv").write_text("id,name,email\n1,Ada,ada@example.com\n2,Bob,NULL\n3,Cy,\n")
    (tmp_path / ".env").write_text(f"POSTGRES_PASSWORD={dsn.password or ''}\nPG_USER={dsn.username}\n")
    (tmp_path / "pipeline.yml").write_text(f"""\
version: "1.0"
project:
  name: "csv_to_postgresql_pipeline"
sources:
  - name: "csv_source"
    type: "csv"
    path: "./data/users.csv"
    delimiter: ","
    has_header: true
destinations:
  - name: "pg_dest"
    type: "postgresql"
    host: "{dsn.hostname}"
    port: {dsn.port or 5432}
    database: "{dsn.path.lstrip('/')}"
    user: "$PG_USER"
    db_schema: "{pg_schema}"
    table: "users_backup"
    write_mode: merge
    primary_keys: [id]
    auto_create_table: true
resources:
  - name: "csv_to_postgresql"
    source: "csv_source"
    destination: "pg_dest"
    query: "n/a"
    quality_checks:
      - {{column: id, check: not_null, action: FAIL}}
""")
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "conduitd", "--once", "-c", "pipeline.yml",
                                                   cwd=tmp_path, stdout=asyncio.subprocess.DEVNULL,
                                                   stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert (dsn.password or "\0") not in stderr.decode()
    rows = await pg.fetch(f'SELECT id::text AS id, name, email FROM "{pg_schema}".users_backup ORDER BY id')  # type: ignore[attr-defined]
    # `NULL` is one of the CSV null tokens the seed tool read as null (the file source's `null_values`)
    assert [tuple(r) for r in rows] == [("1", "Ada", "ada@example.com"), ("2", "Bob", None), ("3", "Cy", None)]
