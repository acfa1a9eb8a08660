"""An error no part of conduitd expected (a bug) still ends in one line and exit 1, never a
traceback, and never with a secret in it."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conduitd import cli, commands

CONFIG = """\
sources: [{name: f, type: file, path: "in/*.jsonl"}]
destinations: [{name: d, type: postgres, dsn: "postgresql://app:Sup3r-Secret@127.0.0.1:1/wh"}]
resources: [{name: r, source: f, destination: d}]
"""
BUGS = st.sampled_from([RuntimeError, TypeError, KeyError, AttributeError, AssertionError, LookupError])


@given(kind=BUGS, message=st.text(max_size=20))
def test_an_unexpected_error_is_one_line_and_exit_1(tmp_path_factory: pytest.TempPathFactory, kind: type[Exception],
                                                     message: str) -> None:
    folder = tmp_path_factory.mktemp("cli")
    config = folder / "conduitd.yaml"
    config.write_text(CONFIG)

    async def buggy(*args: object, **kwargs: object) -> int:
        raise ExceptionGroup("task group", [kind(f"{message} postgresql://app:Sup3r-Secret@h/x")])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(commands, "validate", buggy)
        capture = folder / "stderr.txt"
        with capture.open("w") as stderr:
            patch.setattr("sys.stderr", stderr)
            code = cli.main(["validate", "-c", str(config)])
    text = capture.read_text()
    assert code == 1
    assert "Traceback" not in text and "Sup3r-Secret" not in text
    assert text.startswith("conduitd: error: unexpected ")


def test_the_real_cli_prints_no_traceback_for_a_config_directory(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "conduitd", "validate", "-c", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
