"""The outputs a run writes besides its destination's tables, checked the way `run` will use
them: the manifest, a file DLQ, a Kafka DLQ's producer properties, and a SQLite database (with
the -wal/-shm files beside it).

`validate` calls `output_problems` (which writes nothing and connects nowhere); `run` checks the
manifest and a file DLQ for real before reading anything (`conduitd.oserrors.check_writable`),
builds a Kafka DLQ's producer when its pipeline starts, and calls `check_targets` for the
databases. Both report the same problems with the same exit code (2: the user must fix the
config or the file)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conduitd.config import Config, DestinationConfig, DlqConfig, PipelineConfig, SqliteDestinationConfig
from conduitd.errors import ConfigError
from conduitd.oserrors import os_error_text, writable_problem

SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_MIN_SIZE = 512
"""The smallest SQLite database that holds anything: one page of the smallest page size."""

NO_FILES = frozenset({"proc", "sysfs", "cgroup", "cgroup2", "devpts", "securityfs", "debugfs", "tracefs", "pstore",
                      "bpf", "configfs", "efivarfs", "binfmt_misc", "fusectl", "autofs", "nsfs", "mqueue",
                      "rpc_pipefs", "selinuxfs", "hugetlbfs"})
"""Kernel file systems on which no regular file can be created, whatever the permissions say
(root passes every permission check there, and the create then fails)."""


def output_problems(config: Config, pipeline: PipelineConfig) -> list[tuple[str, str]]:
    """(what, why) for each output of `pipeline` that `run` could not write: the manifest, its
    DLQ (a file, or a Kafka producer's `client` properties) and its SQLite database."""
    outputs: list[tuple[str, str]] = []
    if config.service.manifest_path:
        outputs.append(("service.manifest_path", config.service.manifest_path))
    if pipeline.dlq.type == "file" and pipeline.dlq.path:
        outputs.append((f"resources[{pipeline.name}].dlq.path", pipeline.dlq.path))
    problems = []
    for what, path in outputs:
        why = path_problem(path)
        if why is not None:
            problems.append((what, f"{path!r} cannot be written: {why}"))
    if pipeline.dlq.type == "kafka":
        why = kafka_dlq_problem(pipeline.dlq)
        if why is not None:
            problems.append((f"resources[{pipeline.name}].dlq.client", why))
    return problems + target_problems(config.destination(pipeline.destination))


def target_problems(destination: DestinationConfig) -> list[tuple[str, str]]:
    """(what, why) when `destination` is a SQLite database that `run` could not use: its file or
    directory cannot be written, or the file is not a SQLite database."""
    if not isinstance(destination, SqliteDestinationConfig) or destination.path in ("", ":memory:") \
            or destination.path.startswith("file:"):
        return []
    what, path = f"destinations[{destination.name}].path", destination.path
    not_a_database = sqlite_file_problem(path)
    if not_a_database is not None:
        return [(what, not_a_database)]
    directory = Path(path).parent
    # SQLite creates the file but not its directory, and writes -wal/-shm files beside it.
    why = (f"the directory {str(directory)!r} does not exist" if not directory.is_dir()
           else path_problem(path) or path_problem(directory / f"{Path(path).name}-wal"))
    return [] if why is None else [(what, f"{path!r} cannot be written: {why}")]


def check_targets(config: Config, only: Sequence[str]) -> None:
    """For `run`, before anything is read: raise ConfigError for a SQLite `path` that is a file
    but not a SQLite database (SQLite would refuse it only once the pipeline started)."""
    for pipeline in config.resources:
        if only and pipeline.name not in only:
            continue
        destination = config.destination(pipeline.destination)
        if isinstance(destination, SqliteDestinationConfig) and destination.path not in ("", ":memory:") \
                and not destination.path.startswith("file:"):
            why = sqlite_file_problem(destination.path)
            if why is not None:
                raise ConfigError(f"destinations[{destination.name}].path: {why}")


def sqlite_file_problem(path: str | Path) -> str | None:
    """Why the existing file at `path` is not a SQLite database, or None (no file, an empty one,
    which SQLite makes a database of, or one that starts like a database). Only its first bytes
    are read; they are never quoted (the file may hold anything)."""
    target = Path(path)
    try:
        if not target.is_file() or target.stat().st_size == 0:
            return None
        size = target.stat().st_size
        with target.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        return f"{str(path)!r} cannot be read: {os_error_text(exc)}"
    if head != SQLITE_MAGIC or size < SQLITE_MIN_SIZE:
        return (f"{str(path)!r} is not a SQLite database (a file of {size} bytes without SQLite's header): "
                "point `path` at a SQLite database, or at a file that does not exist yet")
    return None


def path_problem(path: str | Path) -> str | None:
    """Why `run` could not append to `path` (creating it and its directories if missing), or
    None; nothing is written. An existing regular file is opened the way `run` opens it (which
    writes nothing); a new one is judged by the directory that would hold it."""
    target = Path(path)
    if target.is_file():
        try:
            with target.open("ab"):
                pass
        except OSError as exc:
            return os_error_text(exc)
        return None
    why = writable_problem(target)
    if why is not None or target.exists():
        return why
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    kind = file_system(parent)
    if kind in NO_FILES:
        return f"{parent}: no file can be created on a {kind!r} file system"
    return None


def file_system(path: Path) -> str | None:
    """The type of the file system holding the existing `path` (Linux; None where unknown)."""
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best, kind = "", None
    for line in lines:
        fields = line.split()
        if "-" not in fields[6:]:
            continue
        mount = _unescape(fields[4])
        # The longest mount point holding the path; of equal ones the last mounted is on top.
        inside = real == mount or real.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, fields[fields.index("-", 6) + 1]
    return kind


def _unescape(text: str) -> str:
    """A mountinfo field: space, tab, newline and backslash are written as octal escapes."""
    for code in ("040", "011", "012", "134"):
        text = text.replace("\\" + code, chr(int(code, 8)))
    return text


def kafka_dlq_problem(dlq: DlqConfig) -> str | None:
    """librdkafka's verdict on a Kafka DLQ's producer properties, as `run` gets it when the
    pipeline starts, without connecting (the producer is built without brokers), or None."""
    from confluent_kafka import Producer

    from conduitd.sources.kafka.clients import create_client

    # The properties of `conduitd.dlq_sinks.KafkaDlq` but `bootstrap.servers` (a test holds the
    # two to the same verdicts).
    settings: dict[str, Any] = {**dlq.client, "enable.idempotence": False}
    try:
        create_client(Producer, settings, dlq.client, f"the Kafka DLQ (topic {dlq.topic})")
    except ConfigError as exc:
        return str(exc)
    return None
