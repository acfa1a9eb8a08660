"""Names of a file destination's files, relative to its root (pure).

    <table>/part-<commit:08d>-<token>-<n>.<ext>       a data part (table name %-encoded)
    <table>/.part-<commit:08d>-<token>-<n>.<ext>.tmp  the same part before it is published (local)
    _dlq/<dlq table>/part-...jsonl                     rejected rows, one JSON object per line
    _conduitd_state.json                               the state file (`state`)

Only names of these shapes are ever removed: other files under the root are left alone.
"""

from __future__ import annotations

import re
import urllib.parse

from conduitd.destinations.files.state import STATE_NAME

DLQ_DIR = "_dlq"
_OURS = re.compile(r"\.?part-\d{8}-[0-9a-f]{8}-\d+\.(?:csv|json|jsonl|parquet)(?:\.tmp)?|"
                   + re.escape(f".{STATE_NAME}") + r"\.[0-9a-f]{8}\.tmp")


def folder(table: str) -> str:
    return urllib.parse.quote(table, safe="")


def part_name(directory: str, commit: int, token: str, number: int, ext: str) -> str:
    return f"{directory}/part-{commit:08d}-{token}-{number}{ext}"


def temporary(name: str) -> str:
    """Where a part is written before it is published (local storage)."""
    directory, _, base = name.rpartition("/")
    return f"{directory}/.{base}.tmp" if directory else f".{base}.tmp"


def state_temporary(token: str) -> str:
    return f".{STATE_NAME}.{token}.tmp"


def is_ours(name: str) -> bool:
    """Whether `name` has the shape of a file conduitd writes (a part, a temporary, a state temporary)."""
    return _OURS.fullmatch(name.rpartition("/")[2]) is not None
