"""Manual schema evolution: the DDL conduitd did not apply, appended to a migration file for a
person to review and run. Written only after the batch that planned it has committed."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

from conduitd.config import PipelineConfig
from conduitd.core.records import SchemaChange

log = logging.getLogger(__name__)


def write_migration(pipeline: PipelineConfig, changes: Sequence[SchemaChange]) -> None:
    """Manual mode: append the DDL that was not applied to a migration file, and log it."""
    directory = Path(pipeline.schema_evolution.migrations_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{time.strftime('%Y%m%d%H%M%S')}_{pipeline.name}.sql"
    statements = sorted({c.ddl for c in changes if c.ddl})
    existing = path.read_text() if path.exists() else ""
    with path.open("a") as handle:
        for statement in statements:
            if statement not in existing:
                handle.write(statement + ";\n")
    log.warning("schema changes not applied (schema_evolution manual): %s; written to %s",
                "; ".join(statements), path, extra={"pipeline": pipeline.name})
