"""Exception groups (task groups wrap errors in them, nested to any depth) are walked by one
helper, `errors.leaves`: `describe` (what /status and the manifest show), the CLI's exit code and
message, and the command guard all name the same error for any tree of groups."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd import cli
from conduitd.commands.guard import guarded
from conduitd.errors import (
    ConduitError,
    ConfigError,
    DependencyUnreachable,
    QualityFailure,
    SchemaIncompatible,
    describe,
    first_conduit_error,
    leaves,
)

KINDS: list[type[BaseException]] = [ConduitError, ConfigError, QualityFailure, SchemaIncompatible,
                                    DependencyUnreachable, ValueError, OSError, RuntimeError]
LEAF = st.tuples(st.sampled_from(KINDS), st.integers(0, 999)).map(lambda k: k[0](f"{k[0].__name__} {k[1]}"))
TREES = st.recursive(LEAF, lambda inner: st.lists(inner, min_size=1, max_size=3).map(
    lambda items: ExceptionGroup("group", items)), max_leaves=12)


def depth_first(error: BaseException) -> list[BaseException]:
    """The leaves as a reader of the tree lists them (recursion is fine for these small trees)."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in depth_first(inner)]
    return [error]


def reported_by_the_cli(error: BaseException, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    async def failing() -> int:
        raise error

    code = cli._run_async(failing())
    return code, capsys.readouterr().err.strip().removeprefix("conduitd: error: ")


@settings(max_examples=150)
@given(error=TREES)
def test_describe_the_cli_and_the_guard_name_the_same_error(error: BaseException,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert leaves(error) == depth_first(error)
    first = next((e for e in depth_first(error) if isinstance(e, ConduitError)), None)
    assert first_conduit_error(error) is first
    if first is None:
        assert describe(error) == repr(error)
        return
    assert describe(error) == str(first)
    assert reported_by_the_cli(error, capsys) == (int(first.exit_code), str(first))

    async def command() -> int:
        raise error

    # A group holding a ConduitError goes through the guard untouched, for the CLI to report.
    with pytest.raises(BaseException) as caught:
        asyncio.run(guarded(command)())
    assert first_conduit_error(caught.value) is first


def test_a_shallower_error_does_not_win_over_the_first_one() -> None:
    """`describe` walked groups breadth first and the CLI depth first: /status and the exit
    message named different errors for one failure."""
    deep = ConfigError("the first error")
    error = ExceptionGroup("outer", [ExceptionGroup("inner", [deep]), QualityFailure("a later error")])
    assert describe(error) == "the first error"


def test_groups_nested_beyond_the_recursion_limit_are_walked() -> None:
    deep = ConfigError("deep inside")
    error: BaseException = deep
    for _ in range(5000):
        error = ExceptionGroup("wrapped", [error])
    assert leaves(error) == [deep]
    assert describe(error) == "deep inside"
