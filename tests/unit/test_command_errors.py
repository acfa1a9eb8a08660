"""Errors of the CLI commands become clear messages with a documented exit code: the guard every
command runs through, the file DLQ (reading garbage, writing to a full disk) and the manifest
(a write that fails after the start check)."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.commands.guard import guarded
from conduitd.core.records import Reject
from conduitd.dlq_sinks import FileDlq, entry, read_file
from conduitd.errors import ConduitError, ConfigError, ExitCode, TransientError
from conduitd.ops.manifest import Manifest
from conduitd.ops.metrics import Metrics, PipelineStatus

ERRNOS = sorted(errno.errorcode)


def raising(exc: BaseException) -> int:
    async def command() -> int:
        raise exc

    return asyncio.run(guarded(command)())


@settings(max_examples=60)
@given(st.sampled_from(ERRNOS), st.text(max_size=40), st.one_of(st.none(), st.text(max_size=40)))
def test_any_oserror_of_a_command_becomes_a_conduit_error_naming_the_path(code: int, text: str,
                                                                         path: str | None) -> None:
    with pytest.raises(ConduitError) as caught:
        raising(OSError(code, text, path) if path is not None else OSError(code, text))
    message = str(caught.value)
    assert caught.value.exit_code == ExitCode.RUNTIME
    assert errno.errorcode[code] in message
    if path is not None:
        assert repr(path) in message
    assert "Traceback" not in message


@settings(max_examples=40)
@given(st.text(max_size=80), st.sampled_from([ValueError, UnicodeDecodeError, json.JSONDecodeError]))
def test_any_value_error_of_a_command_becomes_a_conduit_error(text: str, kind: type[ValueError]) -> None:
    error: ValueError
    if kind is UnicodeDecodeError:
        error = UnicodeDecodeError("utf-8", b"\xff", 0, 1, text)
    elif kind is json.JSONDecodeError:
        error = json.JSONDecodeError(text, "doc", 0)
    else:
        error = ValueError(text)
    with pytest.raises(ConduitError) as caught:
        raising(error)
    assert caught.value.exit_code == ExitCode.RUNTIME
    assert type(error).__name__ in str(caught.value)


def test_errors_inside_task_groups_are_turned_too_and_conduit_errors_are_left_alone() -> None:
    with pytest.raises(ConduitError) as caught:
        raising(ExceptionGroup("tasks", [ExceptionGroup("inner", [OSError(errno.ENOSPC, "full", "/x")])]))
    assert "ENOSPC" in str(caught.value) and "'/x'" in str(caught.value)
    with pytest.raises(ExceptionGroup):  # the CLI maps groups holding ConduitErrors itself
        raising(ExceptionGroup("tasks", [ConfigError("bad"), OSError(errno.EIO, "io")]))
    with pytest.raises(ConfigError):
        raising(ConfigError("bad"))
    with pytest.raises(KeyError):  # not an I/O or value problem: a bug, shown as one
        raising(KeyError("k"))


# -- the file DLQ -------------------------------------------------------------------------------

_REJECT = st.builds(Reject, partition=st.text(max_size=10), position=st.one_of(st.none(), st.integers()),
                    rule=st.sampled_from(["decode", "cast", "not_null:x"]), reason=st.text(max_size=20),
                    payload=st.text(max_size=30))
_GARBAGE = st.one_of(st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),
                     st.sampled_from([b"[]", b"1", b'"x"', b"{}", b'{"id": 1}', b'{"id": "x", "pipeline": 2}']))


@settings(max_examples=60)
@given(st.lists(st.one_of(_REJECT.map(lambda r: ("entry", r)), _GARBAGE.map(lambda g: ("garbage", g))),
                max_size=12))
def test_reading_a_dlq_file_lists_every_entry_once_and_skips_lines_it_cannot_read(
        tmp_path_factory: pytest.TempPathFactory, lines: list[tuple[str, object]]) -> None:
    path = tmp_path_factory.mktemp("dlq") / "dlq.jsonl"
    written: list[dict[str, object]] = []
    with path.open("wb") as handle:
        for kind, item in lines:
            if kind == "entry":
                assert isinstance(item, Reject)
                body = entry("p", item)
                written.append(body)
                handle.write(orjson.dumps(body) + b"\n")
            else:
                assert isinstance(item, bytes)
                handle.write(item + b"\n")
    found = read_file(str(path))
    expected_ids = list(dict.fromkeys(str(w["id"]) for w in written))
    assert [f["id"] for f in found] == expected_ids


def test_a_full_disk_under_a_file_dlq_is_a_retriable_error_naming_the_file() -> None:
    sink = FileDlq("/dev/full")  # every write fails with ENOSPC
    with pytest.raises(TransientError) as caught:
        asyncio.run(sink.write("p", [Reject("f", 1, reason="bad", payload="x")]))
    assert "/dev/full" in str(caught.value) and "ENOSPC" in str(caught.value)


def test_a_dlq_path_that_is_a_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        asyncio.run(FileDlq(str(tmp_path)).write("p", [Reject("f", 1, reason="bad", payload="x")]))


# -- the manifest -------------------------------------------------------------------------------


def test_a_manifest_write_that_fails_is_logged_counted_and_covered_by_the_next_record(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    status = PipelineStatus("p", "s", "d", "t")
    manifest = Manifest("/dev/full", mode="daemon", metrics=metrics)
    status.rows_read = 5
    with caplog.at_level(logging.ERROR):
        manifest.write([status], exit_code=None, final=False)  # must not raise
    assert manifest.failures == 1
    assert metrics.registry.get_sample_value("conduitd_manifest_write_errors_total") == 1
    assert any("ENOSPC" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    manifest.path = tmp_path / "manifest.jsonl"  # the disk has room again
    status.rows_read = 7
    record = manifest.write([status], exit_code=None, final=False)
    assert record["pipelines"][0]["rows_read"] == 7, "the failed interval's rows are not lost from the manifest"
