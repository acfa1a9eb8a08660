"""`conduit template list | info NAME | generate NAME [-o FILE]`: starter configs for the
source -> destination pairs conduitd has, shipped as YAML files in `conduitd/templates/`.
Every template is a complete conduitd config (the test suite loads each one); the values to fill
in are environment variables (`${POSTGRES_DSN}`) or defaults (`${INPUT_PATH:-data/*.csv}`)."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from conduitd.errors import ConfigError
from conduitd.oserrors import unwritable


@dataclass(frozen=True)
class Template:
    """One starter config."""

    name: str
    source: str
    destination: str
    description: str
    variables: tuple[str, ...]
    """Environment variables the config needs (no default)."""
    extras: tuple[str, ...] = ()
    """pip extras of conduitd it needs: `pip install 'conduitd[postgres]'`."""


TEMPLATES = (
    Template("file_to_sqlite", "file (csv, jsonl, parquet)", "sqlite",
             "Files into a SQLite database: no server needed", ()),
    Template("file_to_duckdb", "file (csv, jsonl, parquet)", "duckdb",
             "Files into a DuckDB database file for analysis: no server needed", (), ("duckdb",)),
    Template("file_to_postgres", "file (csv, jsonl, parquet)", "postgres",
             "Files into PostgreSQL, upserted by key, with quality rules", ("POSTGRES_DSN",), ("postgres",)),
    Template("file_to_mysql", "file (csv, jsonl, parquet)", "mysql",
             "Files into MySQL or MariaDB", ("MYSQL_DSN",), ("mysql",)),
    Template("kafka_to_postgres", "kafka", "postgres",
             "Kafka topics into PostgreSQL, upserted, tombstones delete", ("KAFKA_BROKERS", "POSTGRES_DSN"),
             ("kafka", "postgres")),
    Template("kinesis_to_postgres", "kinesis", "postgres",
             "A Kinesis stream into PostgreSQL", ("AWS_REGION", "POSTGRES_DSN"), ("kinesis", "postgres")),
    Template("postgres_to_postgres", "postgres", "postgres",
             "A PostgreSQL table into another PostgreSQL, incremental by a cursor column",
             ("SOURCE_DSN", "POSTGRES_DSN"), ("postgres",)),
    Template("mysql_to_postgres", "mysql", "postgres",
             "A MySQL/MariaDB table into PostgreSQL, incremental by a cursor column",
             ("MYSQL_HOST", "MYSQL_USER", "MYSQL_PWD", "POSTGRES_DSN"), ("mysql", "postgres")),
)

SEED_NAMES = {"csv_to_postgresql": "file_to_postgres", "csv_to_postgres": "file_to_postgres",
              "csv_to_sqlite": "file_to_sqlite", "json_to_postgresql": "file_to_postgres",
              "parquet_to_postgresql": "file_to_postgres", "mysql_to_postgresql": "mysql_to_postgres",
              "postgresql_to_postgresql": "postgres_to_postgres"}
"""The seed tool's template names -> conduitd's template for the same pair."""


def find(name: str) -> Template:
    wanted = SEED_NAMES.get(name, name)
    for template in TEMPLATES:
        if template.name == wanted:
            return template
    raise ConfigError(f"no template named {name!r} (templates: {', '.join(t.name for t in TEMPLATES)}; "
                      "`conduit template list` describes them)")


def text_of(template: Template) -> str:
    """The template's YAML, as shipped in the package."""
    return (resources.files("conduitd") / "templates" / f"{template.name}.yml").read_text(encoding="utf-8")


async def list_templates() -> int:
    width = max(len(t.name) for t in TEMPLATES)
    print("Templates (conduit template info NAME, conduit template generate NAME -o pipeline.yml):")
    for template in TEMPLATES:
        print(f"  {template.name:<{width}}  {template.source} -> {template.destination}: {template.description}")
    return 0


async def template_info(name: str) -> int:
    template = find(name)
    print(f"template:    {template.name}")
    print(f"source:      {template.source}")
    print(f"destination: {template.destination}")
    print(f"about:       {template.description}")
    print(f"variables:   {', '.join(template.variables) or 'none (every value has a default)'}")
    if template.extras:
        print(f"install:     pip install 'conduitd[{','.join(template.extras)}]'")
    print(f"start:       conduit template generate {template.name} -o pipeline.yml; edit it; "
          "conduit preflight pipeline.yml; conduit run pipeline.yml")
    return 0


async def generate_template(name: str, output: str | None) -> int:
    template = find(name)
    text = text_of(template)
    if output is None:
        sys.stdout.write(text)
        return 0
    try:
        await asyncio.to_thread(_write_new, Path(output), text)
    except FileExistsError:
        raise ConfigError(f"{output} exists already: choose another -o FILE or remove it") from None
    except OSError as exc:
        raise unwritable(output, "-o", exc) from None
    print(f"wrote the {template.name} template to {output}; then: conduit preflight {output}", file=sys.stderr)
    return 0


def _write_new(path: Path, text: str) -> None:
    """Write a file that must not exist yet (a config someone edited is never overwritten)."""
    with path.open("x", encoding="utf-8") as handle:
        handle.write(text)
