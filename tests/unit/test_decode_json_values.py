"""Lines of any JSON value, blank or not, in any order: every line is a row (objects) or a reject
(anything else), and the reader never takes the process down. pyarrow 26's JSON reader crashes
the process on a block whose first line is `null` followed by another line, so such blocks must
never reach it whole."""

from __future__ import annotations

import subprocess
import sys

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.core.decode import decode_jsonl_lines
from conduitd.core.records import Position

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10, 10), st.text(max_size=3))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=2),
                   st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 9), max_size=2))
LINES = st.one_of(VALUES.map(lambda v: orjson.dumps(v)), st.sampled_from([b"", b"  ", b" {}", b"\t{\"a\": 1}"]))


def at(offset: int) -> Position:
    return {"offset": offset}


@settings(max_examples=200)
@given(st.lists(LINES, min_size=1, max_size=6))
def test_every_line_of_any_value_is_a_row_or_a_reject(lines: list[bytes]) -> None:
    block = b"\n".join(lines) + b"\n"
    rows, rejects, kept = decode_jsonl_lines(block, "p", at)
    objects = [i for i, line in enumerate(lines) if line.strip().startswith(b"{")]
    others = [i for i, line in enumerate(lines) if line.strip() and i not in objects]
    assert rows.num_rows == len(objects)
    assert len(rejects) == len(others)
    assert kept is None or list(kept) == objects


def test_a_null_line_first_does_not_crash_the_process() -> None:
    """Checked in a child process: the crash it guards against is a segmentation fault."""
    code = ("from conduitd.core.decode import decode_jsonl_lines\n"
            "for block in (b'null\\n1\\n{\"id\":1}\\n', b'null\\n{\"a\":1}\\n', b'null\\nnull\\n'):\n"
            "    rows, rejects, _ = decode_jsonl_lines(block, 'p', lambda o: {'offset': o})\n"
            "    print(rows.num_rows, len(rejects))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "2", "1", "1", "0", "2"]
