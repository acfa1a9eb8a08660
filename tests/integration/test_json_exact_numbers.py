"""JSON numbers reach both destinations as written, end to end through the CLI: numbers a double
does not hold (long integers and decimals, up to 100 digits) are stored exactly, -0.0 is kept by
PostgreSQL's float8 and dead-lettered by SQLite (whose REAL column reads it back as 0.0), and every
record is in exactly one of the table and the DLQ (issue 8, items 1 and 2)."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers.daemon import conduitd, write_config
from tests.helpers.destinations import Db, postgres, sqlite

_RUNS = itertools.count()
DIGITS = st.text(st.sampled_from("0123456789"), min_size=1, max_size=60)
LONG = st.one_of(
    st.tuples(st.sampled_from(["", "-"]), st.sampled_from("123456789"), DIGITS).map(lambda p: p[0] + p[1] + p[2]),
    st.tuples(st.sampled_from(["", "-"]), DIGITS, DIGITS).map(lambda p: f"{p[0]}{int(p[1])}.{p[2]}"),
)
NUMBERS = LONG | st.sampled_from(["1.5", "-0.0", "0", "2.25", "7"])
ALWAYS = ["-0.0", "123456789012345678901234567890123456789012", "1.0000000000000000000000001",
          "-" + "9" * 80, "0." + "1" * 40]
"""In every run: the cases of the issue, whatever the generated ones are."""


@pytest.fixture(params=["postgres", "sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    return postgres(request) if request.param == "postgres" else sqlite(tmp_path)


@settings(max_examples=2)
@given(numbers=st.lists(NUMBERS, min_size=1, max_size=40))
def test_numbers_are_stored_as_written_or_dead_lettered_with_the_reason(tmp_path: Path, db: Db,
                                                                       numbers: list[str]) -> None:
    numbers = [*numbers, *ALWAYS]
    run = next(_RUNS)
    table = f"t{run}"
    source = tmp_path / f"in{run}" / "a.jsonl"
    source.parent.mkdir()
    source.write_text("".join(f'{{"id":{i},"n":{n}}}\n' for i, n in enumerate(numbers)))
    config = write_config(tmp_path / f"c{run}.yaml", {
        "sources": [{"name": "files", "type": "file", "path": str(source)}],
        "destinations": [db.destination],
        "resources": [{"name": table, "source": "files", "destination": "db", "table": table}],
    })
    result = conduitd("run", "--once", "-c", str(config))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    stored = {r["id"]: r["n"] for r in db.rows(f"SELECT id, n FROM {db.name(table)}")}
    dead = {d["payload"]["id"]: d for d in db.dlq(table)} if f"{table}_dlq" in db.tables() else {}
    assert sorted([*stored, *dead]) == list(range(len(numbers)))  # each record in exactly one place
    for i, written in enumerate(numbers):
        if i in dead:  # only SQLite, only -0.0, and said why
            assert db.kind == "sqlite" and Decimal(written).is_zero() and written.startswith("-")
            assert "cannot keep -0.0" in dead[i]["reason"]
            continue
        value = stored[i]
        assert Decimal(str(value)) == Decimal(written), (written, value)
        if isinstance(value, float) and value == 0:
            assert math.copysign(1, value) == (-1 if written.startswith("-") else 1), (written, value)
