"""What each CLI command does, as coroutines returning an exit code; each runs through
`guard.guarded`, so no command ends in a traceback."""

from conduitd.commands import checkpoints, connectors, dlq, schema
from conduitd.commands import run as _run
from conduitd.commands import validate as _validate
from conduitd.commands.guard import guarded

compare_schema = guarded(schema.compare_schema)
export_schema = guarded(schema.export_schema)
list_connectors = guarded(connectors.list_connectors)
list_dlq = guarded(dlq.list_dlq)
replay_dlq = guarded(dlq.replay_dlq)
reset_checkpoints = guarded(checkpoints.reset_checkpoints)
show_checkpoints = guarded(checkpoints.show_checkpoints)
run = guarded(_run.run)
validate = guarded(_validate.validate)

__all__ = ["compare_schema", "export_schema", "list_connectors", "list_dlq", "replay_dlq", "reset_checkpoints", "run",
           "show_checkpoints", "validate"]
