"""Run `conduitd ARGS` in the test's own process (no interpreter start per command, so
generated-case tests can run many commands): exit code, stdout and stderr apart."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


class Cli:
    """`cli(*args)` -> (exit code, stdout, stderr) of `conduitd ARGS`."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        from conduitd.cli import main

        self.capsys.readouterr()
        code = main(list(args))
        out = self.capsys.readouterr()
        return code, out.out, out.err


def in_process_cli(capsys: pytest.CaptureFixture[str]) -> Iterator[Cli]:
    """Body of a `cli` fixture: the CLI configures logging; the root logger is put back after."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield Cli(capsys)
    root.handlers[:] = handlers
    root.setLevel(level)
