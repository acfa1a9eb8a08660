"""`conduitd connectors`: the sources, destinations and DLQ sinks installed, built in or added by
a package through an entry point, with what each can do and what it still needs."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import orjson

from conduitd import registry
from conduitd.core.redact import redact
from conduitd.errors import ConfigError

log = logging.getLogger(__name__)
_COLUMNS = ("type", "kind", "package", "version", "status", "capabilities")


@dataclass(frozen=True)
class Installed:
    type: str
    kind: str
    package: str
    version: str
    builtin: bool
    status: str
    """ok, missing driver, or broken (it cannot be loaded)."""
    problem: str | None
    capabilities: list[str]
    description: str


def installed() -> list[Installed]:
    """Every connector the registry knows, loaded (a plugin that cannot load is listed as broken)."""
    found = []
    for kind in registry.KINDS:
        for entry in registry.entries(kind).values():
            status, problem, capabilities, description = "ok", None, [], ""
            try:
                connector = registry.load(kind, entry.type)
            except ConfigError as exc:
                status, problem = "broken", str(exc)
            else:
                description = connector.description
                problem = registry.missing_driver(connector)
                if problem is not None:
                    status = "missing driver"
                else:
                    capabilities = _capabilities(connector)
            found.append(Installed(entry.type, kind, entry.package, entry.version, entry.builtin, status, problem,
                                   capabilities, description))
    return found


def _capabilities(connector: registry.Connector) -> list[str]:
    try:
        return registry.capability_names(connector.capabilities)
    except Exception as exc:  # a plugin's own code: listing the others goes on
        log.debug("capabilities of %s %r", connector.kind, connector.type, exc_info=exc)
        return [f"(unreadable: {type(exc).__name__})"]


async def list_connectors(*, as_json: bool) -> int:
    rows = installed()
    if as_json:
        print(redact(orjson.dumps([asdict(r) for r in rows], option=orjson.OPT_INDENT_2).decode()))
        return 0
    table = [[r.type, r.kind, r.package, r.version, r.status, ", ".join(r.capabilities) or "-"] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(_COLUMNS)]
    for row in [[c.upper() for c in _COLUMNS], *table]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    for r in rows:
        if r.problem is not None:
            print(redact(f"{r.kind} {r.type}: {r.problem}"))
    return 0
