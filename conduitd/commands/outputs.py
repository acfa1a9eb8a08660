"""The files a run writes besides its destination, as `validate` checks them (writing nothing):
the manifest, a file DLQ and a SQLite database (with the -wal/-shm files beside it). `run`
checks the first two for real before reading anything, and the SQLite destination when it opens."""

from __future__ import annotations

from pathlib import Path

from conduitd.config import Config, ResourceConfig, SqliteDestinationConfig
from conduitd.core.oserrors import writable_problem


def output_problems(config: Config, resource: ResourceConfig) -> list[tuple[str, str]]:
    """(what, why) for each output of `resource` that could not be written."""
    outputs: list[tuple[str, str]] = []
    if config.service.manifest_path:
        outputs.append(("service.manifest_path", config.service.manifest_path))
    if resource.dlq.type == "file" and resource.dlq.path:
        outputs.append((f"resources[{resource.name}].dlq.path", resource.dlq.path))
    problems = []
    for what, path in outputs:
        why = writable_problem(path)
        if why is not None:
            problems.append((what, f"{path!r} cannot be written: {why}"))
    destination = config.destination(resource.destination)
    if isinstance(destination, SqliteDestinationConfig) and destination.path not in ("", ":memory:"):
        what, path = f"destinations[{destination.name}].path", destination.path
        directory = Path(path).parent
        # SQLite creates the file but not its directory, and writes -wal/-shm files beside it.
        why = (f"the directory {str(directory)!r} does not exist" if not directory.is_dir()
               else writable_problem(path) or writable_problem(directory / f"{Path(path).name}-wal"))
        if why is not None:
            problems.append((what, f"{path!r} cannot be written: {why}"))
    return problems
