"""What each CLI command does, as coroutines returning an exit code; each runs through
`guard.guarded`, so no command ends in a traceback. `run` and `validate` (named like their
modules: an import of the module would rebind the name) are imported with the package; the other
commands' modules when they are first used (`conduitd --once` does not pay for them)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from conduitd.commands import run as _run
from conduitd.commands import validate as _validate
from conduitd.commands.guard import guarded

run = guarded(_run.run)
validate = guarded(_validate.validate)

if TYPE_CHECKING:
    from conduitd.commands import cdc, checkpoints, connectors, dlq, schema

    cdc_setup = guarded(cdc.cdc_setup)

    compare_schema = guarded(schema.compare_schema)
    export_schema = guarded(schema.export_schema)
    list_connectors = guarded(connectors.list_connectors)
    list_dlq = guarded(dlq.list_dlq)
    replay_dlq = guarded(dlq.replay_dlq)
    reset_checkpoints = guarded(checkpoints.reset_checkpoints)
    show_checkpoints = guarded(checkpoints.show_checkpoints)

_LAZY = {"cdc_setup": "cdc", "compare_schema": "schema", "export_schema": "schema", "list_connectors": "connectors",
         "list_dlq": "dlq", "replay_dlq": "dlq", "reset_checkpoints": "checkpoints", "show_checkpoints": "checkpoints"}
"""Command -> the module (of this package) that defines it under the same name."""


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    command = guarded(getattr(importlib.import_module(f"{__name__}.{module}"), name))
    globals()[name] = command
    return command


__all__ = ["cdc_setup", "compare_schema", "export_schema", "list_connectors", "list_dlq", "replay_dlq",
           "reset_checkpoints", "run", "show_checkpoints", "validate"]
