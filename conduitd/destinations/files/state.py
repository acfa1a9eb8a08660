"""The state file: what a file destination has published. One small JSON document, replaced
whole by each commit (an atomic rename locally, one PUT on S3); a part or DLQ part it does not
name is not published, and is removed when the destination opens.

    {"version": 1, "sequence": 7, "next_dlq_id": 3,
     "tables": {"orders": {"columns": [["id", "int64"], ["name", "string"]],
                           "parts": [{"name": "orders/part-00000001-3fa2c1d0.csv", "rows": 500}]}},
     "dlq": {"orders_dlq": ["_dlq/orders_dlq/part-00000001-3fa2c1d0.jsonl"]},
     "checkpoints": {"orders": {"p0": {"position": {"offset": 5}, "updated_at": "2026-..."}}},
     "history": [{"pipeline": "orders", "table": "orders", "kind": "create", ...}]}
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import orjson

from conduitd.core.records import Position, SchemaChange
from conduitd.core.schema import Column
from conduitd.destinations.files.dialect import column_of
from conduitd.errors import ConduitError

STATE_NAME = "_conduitd_state.json"
"""The state file's name, at the root of the destination."""
VERSION = 1


@dataclass
class Part:
    name: str
    """Path relative to the destination's root."""
    rows: int


@dataclass
class Table:
    columns: list[tuple[str, str]]
    """(name, type name of `FileDialect`), in table order."""
    parts: list[Part] = field(default_factory=list)

    def as_columns(self) -> dict[str, Column]:
        return {name: column_of(name, type_name) for name, type_name in self.columns}


@dataclass
class State:
    """See the module docstring; a transaction works on a `copy()`."""

    sequence: int = 0
    """Commits published so far; names the parts of the next one."""
    next_dlq_id: int = 1
    tables: dict[str, Table] = field(default_factory=dict)
    dlq: dict[str, list[str]] = field(default_factory=dict)
    """DLQ table -> its parts (JSON lines), oldest first."""
    checkpoints: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """pipeline -> partition -> {"position": ..., "updated_at": ISO time}."""
    history: list[dict[str, Any]] = field(default_factory=list)

    def copy(self) -> State:
        return copy.deepcopy(self)

    def names(self) -> set[str]:
        """Every file the state publishes (data and DLQ parts)."""
        found = {p.name for t in self.tables.values() for p in t.parts}
        return found | {name for parts in self.dlq.values() for name in parts}

    def position(self, pipeline: str, partition: str) -> Position:
        stored = self.checkpoints.get(pipeline, {}).get(partition)
        return None if stored is None else stored["position"]

    def record(self, pipeline: str, change: SchemaChange, at: str) -> None:
        self.history.append({"pipeline": pipeline, "table": change.table, "kind": change.kind,
                             "column": change.column, "old": change.old, "new": change.new, "ddl": change.ddl,
                             "applied": change.applied, "at": at})

    def dumps(self) -> bytes:
        return orjson.dumps({
            "version": VERSION, "sequence": self.sequence, "next_dlq_id": self.next_dlq_id,
            "tables": {n: {"columns": [list(c) for c in t.columns],
                           "parts": [{"name": p.name, "rows": p.rows} for p in t.parts]}
                       for n, t in self.tables.items()},
            "dlq": self.dlq, "checkpoints": self.checkpoints, "history": self.history,
        }, option=orjson.OPT_INDENT_2)


def loads(data: bytes, where: str) -> State:
    """The state in `data` (the file at `where`, named in errors)."""
    try:
        raw = orjson.loads(data)
        if raw.get("version") != VERSION:
            raise ConduitError(f"file destination state {where}: version {raw.get('version')!r} is not one this "
                               f"conduitd reads ({VERSION})")
        tables = {str(n): Table([(str(c[0]), str(c[1])) for c in t["columns"]],
                                [Part(str(p["name"]), int(p["rows"])) for p in t["parts"]])
                  for n, t in raw["tables"].items()}
        return State(int(raw["sequence"]), int(raw["next_dlq_id"]), tables,
                     {str(k): [str(n) for n in v] for k, v in raw["dlq"].items()},
                     raw["checkpoints"], list(raw["history"]))
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise ConduitError(f"file destination state {where} cannot be read ({type(exc).__name__}: {exc}); it is "
                           "not a state file conduitd wrote") from None
