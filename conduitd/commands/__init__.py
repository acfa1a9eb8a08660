"""What each CLI command does, as coroutines returning an exit code."""

from conduitd.commands.checkpoints import reset_checkpoints, show_checkpoints
from conduitd.commands.dlq import list_dlq, replay_dlq
from conduitd.commands.run import run
from conduitd.commands.schema import compare_schema, export_schema
from conduitd.commands.validate import validate

__all__ = ["compare_schema", "export_schema", "list_dlq", "replay_dlq", "reset_checkpoints", "run",
           "show_checkpoints", "validate"]
