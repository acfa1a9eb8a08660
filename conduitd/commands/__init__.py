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
    from conduitd.commands import cdc, checkpoints, connectors, dlq, dryrun, manifest, preflight, schema, template

    cdc_setup = guarded(cdc.cdc_setup)

    compare_schema = guarded(schema.compare_schema)
    export_schema = guarded(schema.export_schema)
    list_connectors = guarded(connectors.list_connectors)
    list_dlq = guarded(dlq.list_dlq)
    replay_dlq = guarded(dlq.replay_dlq)
    reset_checkpoints = guarded(checkpoints.reset_checkpoints)
    show_checkpoints = guarded(checkpoints.show_checkpoints)
    dry_run = guarded(dryrun.dry_run)
    show_manifest = guarded(manifest.show_manifest)
    show_preflight = guarded(preflight.show_preflight)
    preflight_before_run = guarded(preflight.preflight_before_run)
    list_templates = guarded(template.list_templates)
    template_info = guarded(template.template_info)
    generate_template = guarded(template.generate_template)
    schema_format = schema.schema_format

_LAZY = {"cdc_setup": "cdc", "compare_schema": "schema", "export_schema": "schema", "list_connectors": "connectors",
         "list_dlq": "dlq", "replay_dlq": "dlq", "reset_checkpoints": "checkpoints", "show_checkpoints": "checkpoints",
         "dry_run": "dryrun", "show_manifest": "manifest", "show_preflight": "preflight",
         "preflight_before_run": "preflight", "list_templates": "template", "template_info": "template",
         "generate_template": "template"}
"""Command -> the module (of this package) that defines it under the same name."""
_PLAIN = {"schema_format": "schema"}
"""Helpers (not commands) of the CLI -> their module: looked up as they are, not guarded."""


def __getattr__(name: str) -> Any:
    if name in _PLAIN:
        helper = getattr(importlib.import_module(f"{__name__}.{_PLAIN[name]}"), name)
        globals()[name] = helper
        return helper
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    command = guarded(getattr(importlib.import_module(f"{__name__}.{module}"), name))
    globals()[name] = command
    return command


__all__ = ["cdc_setup", "compare_schema", "dry_run", "export_schema", "generate_template", "list_connectors",
           "list_dlq", "list_templates", "preflight_before_run", "replay_dlq", "reset_checkpoints", "run",
           "schema_format", "show_checkpoints", "show_manifest", "show_preflight", "template_info", "validate"]
