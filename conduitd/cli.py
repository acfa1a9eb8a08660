"""The `conduitd` command (alias `conduit`): the only place that configures logging and exits.

    conduitd [run] -c FILE [--once] [-p PIPELINE ...]
    conduitd validate -c FILE [-p PIPELINE ...] [--json]
    conduitd schema PIPELINE -c FILE [--format json|yaml] [-o FILE] [--sample-size N]
    conduitd schema-compare PIPELINE -c FILE [--baseline FILE] [--json]
    conduitd dlq list|replay -c FILE -p PIPELINE [--rule R] [--since T] [--until T] [--limit N]
    conduitd checkpoints show -c FILE [-p PIPELINE] [--json]
    conduitd checkpoints reset -c FILE -p PIPELINE [--partition P]
    conduitd cdc setup -c FILE [-p PIPELINE ...] [--apply]
    conduitd connectors [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from conduitd import __version__
from conduitd.config import Config, PipelineConfig
from conduitd.configfile import load_config
from conduitd.core.redact import redact
from conduitd.destinations.base import DlqFilter
from conduitd.errors import ConduitError, ConfigError, ExitCode, first_conduit_error
from conduitd.ops import telemetry
from conduitd.ops.logs import configure

log = logging.getLogger("conduitd")
_COMMANDS = {"run", "validate", "checkpoints", "schema", "schema-compare", "dlq", "connectors", "cdc"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="conduitd", description="Streaming ingestion with checkpointed commits.")
    parser.add_argument("--version", action="version", version=f"conduitd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("-c", "--config", required=True, help="the YAML config file")
        p.add_argument("-p", "--pipeline", "-r", "--resource", dest="pipeline", action="append", default=[],
                       metavar="PIPELINE",
                       help="only this pipeline (an entry of `resources:`); may be repeated; -r/--resource is "
                            "the same option under its earlier name")

    run = commands.add_parser("run", help="run the pipelines (the default command)")
    with_config(run)
    run.add_argument("--once", action="store_true",
                     help="read what the sources hold now, commit it, and exit")
    validate = commands.add_parser("validate", help="check config, rules, connectivity and schemas; writes nothing")
    with_config(validate)
    validate.add_argument("--json", action="store_true", help="JSON output")

    def with_one_pipeline(p: argparse.ArgumentParser) -> None:
        p.add_argument("pipeline_name", metavar="PIPELINE", nargs="?", help="the pipeline (or -p PIPELINE)")
        with_config(p)
        p.add_argument("--sample-size", type=int, default=1000, help="records to sample (default 1000)")

    schema = commands.add_parser("schema", help="infer a pipeline's source schema and export it")
    with_one_pipeline(schema)
    schema.add_argument("--format", choices=("json", "yaml"), default="json")
    schema.add_argument("-o", "--output", help="write to this file instead of standard output")
    compare = commands.add_parser("schema-compare", help="drift between the source and its table; exit 4 on drift")
    with_one_pipeline(compare)
    compare.add_argument("--baseline", help="compare with a schema file written by `conduitd schema`")
    compare.add_argument("--json", action="store_true", help="JSON output")
    dlq = commands.add_parser("dlq", help="list or replay rejected records")
    dlq_actions = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (("list", "show DLQ rows"), ("replay", "re-run DLQ rows through the current rules and "
                                                               "schema; the ones that pass move to the table")):
        action = dlq_actions.add_parser(name, help=text)
        with_config(action)
        action.add_argument("--rule", help="only rows rejected by this rule (e.g. decode, cast, not_null:email)")
        action.add_argument("--since", type=_timestamp, help="only rows rejected at or after (ISO 8601)")
        action.add_argument("--until", type=_timestamp, help="only rows rejected before (ISO 8601)")
        action.add_argument("--limit", type=int, help="at most this many rows")
        if name == "list":
            action.add_argument("--json", action="store_true", help="JSON output")
    checkpoints = commands.add_parser("checkpoints", help="show or reset stored positions")
    actions = checkpoints.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print stored positions")
    with_config(show)
    show.add_argument("--json", action="store_true", help="JSON output")
    reset = actions.add_parser("reset", help="forget stored positions: the next run starts over")
    with_config(reset)
    reset.add_argument("--partition", help="only this partition (e.g. a file path)")
    cdc = commands.add_parser("cdc", help="prepare source tables for change capture")
    cdc_actions = cdc.add_subparsers(dest="action", metavar="ACTION", required=True)
    setup = cdc_actions.add_parser("setup", help="print (or --apply) the DDL of PostgreSQL's exact mode (an xid8 "
                                                 "column, its trigger and index)")
    with_config(setup)
    setup.add_argument("--apply", action="store_true", help="run the DDL on the source (needs ALTER rights)")
    connectors = commands.add_parser("connectors", help="list the installed sources, destinations and DLQ sinks")
    connectors.add_argument("--json", action="store_true", help="JSON output")
    return parser


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def main(argv: Sequence[str] | None = None) -> int:
    sys.excepthook = _redacted_excepthook
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not any(a in _COMMANDS for a in args_list[:1]) and not {"-h", "--help", "--version"} & set(args_list):
        args_list.insert(0, "run")  # `conduitd --once -c FILE` means `conduitd run --once -c FILE`
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exit_:
        return int(exit_.code or 0) and int(ExitCode.CONFIG)
    try:
        if args.command == "connectors":  # needs no config file
            from conduitd import commands

            return _run_async(commands.list_connectors(as_json=args.json))
        config = load_config(args.config)
        unknown = [r for r in args.pipeline if r not in {x.name for x in config.resources}]
        if unknown:
            names = ", ".join(x.name for x in config.resources)
            raise ConfigError(f"{args.config}: no pipeline named {', '.join(unknown)} (defined: {names})")
        configure(config.service.log_format, config.service.log_level)
        return _dispatch(args, config)
    except ConduitError as exc:
        return _report(exc)
    except KeyboardInterrupt:
        return int(ExitCode.RUNTIME)
    except Exception as exc:  # noqa: BLE001 - the last net: one line, never a traceback
        return _report_bug(exc)


def _report_bug(exc: Exception) -> int:
    """An error no part of conduitd expected is a bug in conduitd: say so in one line (the
    traceback goes to the log at debug level, redacted like everything else)."""
    logging.getLogger("conduitd").debug("unexpected error", exc_info=exc)
    print(redact(f"conduitd: error: unexpected {type(exc).__name__}: {exc} (a bug in conduitd; "
                 "run with service.log_level: debug for the traceback)"), file=sys.stderr)
    return int(ExitCode.RUNTIME)


def _dispatch(args: argparse.Namespace, config: Config) -> int:
    from conduitd import commands

    if args.command == "validate":
        return _run_async(commands.validate(config, args.pipeline, as_json=args.json))
    if args.command in ("schema", "schema-compare"):
        pipeline = _one_pipeline(config, [args.pipeline_name] if args.pipeline_name else args.pipeline)
        if args.command == "schema":
            return _run_async(commands.export_schema(config, pipeline, fmt=args.format, output=args.output,
                                                     sample_size=args.sample_size))
        return _run_async(commands.compare_schema(config, pipeline, baseline=args.baseline, as_json=args.json,
                                                  sample_size=args.sample_size))
    if args.command == "dlq":
        pipeline = _one_pipeline(config, args.pipeline)
        where = DlqFilter(args.rule, args.since, args.until, args.limit)
        if args.action == "list":
            return _run_async(commands.list_dlq(config, pipeline, where, as_json=args.json))
        return _run_async(commands.replay_dlq(config, pipeline, where))
    if args.command == "checkpoints":
        if args.action == "show":
            return _run_async(commands.show_checkpoints(config, args.pipeline, as_json=args.json))
        if len(args.pipeline) != 1:
            raise ConfigError("checkpoints reset needs exactly one -p PIPELINE")
        return _run_async(commands.reset_checkpoints(config, args.pipeline[0], args.partition))
    if args.command == "cdc":
        return _run_async(commands.cdc_setup(config, args.pipeline, apply=args.apply))
    gc.set_threshold(100_000, 50, 100)  # decode-heavy loops allocate many short-lived objects
    telemetry.configure_from_environment()
    try:
        return _run_async(commands.run(config, args.pipeline, once=args.once))
    finally:
        telemetry.shutdown()


def _one_pipeline(config: Config, names: Sequence[str]) -> PipelineConfig:
    if len(names) != 1:
        raise ConfigError("name exactly one pipeline (PIPELINE or -p PIPELINE)")
    found = [r for r in config.resources if r.name == names[0]]
    if not found:
        raise ConfigError(f"no pipeline named {names[0]!r} (defined: {', '.join(r.name for r in config.resources)})")
    return found[0]


def _run_async(coro: Coroutine[Any, Any, int]) -> int:
    """Run on uvloop when it is installed; map ConduitErrors (also inside task groups) to exit codes."""
    try:
        import uvloop

        run: Callable[[Coroutine[Any, Any, int]], int] = uvloop.run
    except ImportError:
        run = asyncio.run
    try:
        return run(coro)
    except ConduitError as exc:
        return _report(exc)
    except BaseExceptionGroup as group:  # raised by task groups
        error = first_conduit_error(group)
        if error is None:
            raise
        return _report(error)


def _report(exc: ConduitError) -> int:
    print(redact(f"conduitd: error: {exc}"), file=sys.stderr)
    return int(exc.exit_code)


def _redacted_excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    """A bug's traceback still reaches the user (to report it), but never with a secret in it."""
    sys.stderr.write(redact("".join(traceback.format_exception(kind, exc, tb))))
