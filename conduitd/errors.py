"""One exception tree for conduitd; each class carries its exit code and whether a retry can help.

    ConduitError                      exit 1, not retriable
    ├── ConfigError                   exit 2  bad YAML, unknown key, unset variable, bad usage
    ├── QualityFailure                exit 3  a quality rule with `action: fail` rejected a row
    ├── SchemaIncompatible            exit 4  source and destination schemas cannot be reconciled
    ├── DependencyUnreachable         exit 5  a database, broker or port could not be reached
    │   └── (retriable while the daemon runs; final under --once once retries are spent)
    ├── TransientError                exit 1  retriable: connection dropped, serialization failure
    └── CheckpointConflict            exit 1  compare-and-set lost: another replica owns the partition

Driver exceptions are translated into this tree at the connector boundary, by type or SQLSTATE.
"""

from __future__ import annotations

from enum import IntEnum

from conduitd.core.redact import redact


class ExitCode(IntEnum):
    """Process exit codes: documented in the README, relied upon by automation."""

    OK = 0
    RUNTIME = 1
    CONFIG = 2
    QUALITY = 3
    SCHEMA = 4
    UNREACHABLE = 5


class ConduitError(Exception):
    """Base of every error conduitd raises on purpose."""

    exit_code: ExitCode = ExitCode.RUNTIME
    retriable: bool = False


class ConfigError(ConduitError):
    """The configuration or the command line is wrong; the message names file, key and line."""

    exit_code = ExitCode.CONFIG


class QualityFailure(ConduitError):
    """A rule whose action is `fail` rejected a row: the batch is not committed."""

    exit_code = ExitCode.QUALITY


class SchemaIncompatible(ConduitError):
    """The batch cannot be written to the destination table as it stands."""

    exit_code = ExitCode.SCHEMA


class DependencyUnreachable(ConduitError):
    """A server or port could not be reached; retrying later may help."""

    exit_code = ExitCode.UNREACHABLE
    retriable = True


class TransientError(ConduitError):
    """A failure that a retry of the same work is expected to cure."""

    retriable = True


class CheckpointConflict(ConduitError):
    """The stored checkpoint is not the batch's start position: another writer moved it."""


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside `exc` in order, depth first: `exc` itself, or the leaves of the
    exception groups it nests (task groups wrap errors so). Iterative: nesting has no limit."""
    found: list[BaseException] = []
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if isinstance(current, BaseExceptionGroup):
            pending.extend(reversed(current.exceptions))
        else:
            found.append(current)
    return found


def first_conduit_error(exc: BaseException) -> ConduitError | None:
    """The first ConduitError among the `leaves` of `exc`: the one the CLI reports."""
    return next((leaf for leaf in leaves(exc) if isinstance(leaf, ConduitError)), None)


def describe(exc: BaseException) -> str:
    """The message of the first ConduitError inside `exc` (see `leaves`), else its repr;
    redacted: this is what /status, the manifest and the CLI show."""
    error = first_conduit_error(exc)
    return redact(str(error) if error is not None else repr(exc))


class TruncatedAtSource(ConduitError):
    """A log-based source's table was truncated at the source: a TRUNCATE carries no keys, so the
    destination cannot follow it (exit 1, not retried; the message says how to re-read the table)."""


class NotNow(ConduitError):
    """An operation the pipeline's state does not allow now (pause a failed pipeline, reset the
    checkpoints of a running one): the control plane answers 409."""


def exit_code_of(exc: BaseException) -> int:
    """The exit code a run that ended with `exc` reports: the first ConduitError's in an
    exception group, else RUNTIME."""
    leaves = [exc]
    while leaves and isinstance(leaves[0], BaseExceptionGroup):
        leaves = list(leaves[0].exceptions) + leaves[1:]
    for leaf in leaves:
        if isinstance(leaf, ConduitError):
            return int(leaf.exit_code)
    return int(ExitCode.RUNTIME)
