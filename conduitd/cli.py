"""The `conduitd` command and its batch name `conduit` (the seed tool's): the only place that
configures logging and exits. The parser is `conduitd.commands.arguments`.

    conduitd [run] [CONFIG] [-c FILE] [--once | --daemon | --dry-run] [-p PIPELINE ...] [--skip-preflight]
    conduit run [CONFIG] ...              the same command, `--once` unless told `--daemon`
    conduitd preflight [CONFIG] [-p PIPELINE ...]
    conduitd validate -c FILE [-p PIPELINE ...] [--json]
    conduitd schema PIPELINE -c FILE [--format json|yaml] [-o FILE] [--sample-size N]
    conduitd schema-compare PIPELINE -c FILE [--baseline FILE] [--json]
    conduitd manifest [-m PATH | -c FILE] [-p NAME ...] [--failed] [--json]
    conduitd template list | info NAME | generate NAME [-o FILE]
    conduitd dlq list|replay -c FILE -p PIPELINE [--rule R] [--since T] [--until T] [--limit N]
    conduitd checkpoints show -c FILE [-p PIPELINE] [--json]
    conduitd checkpoints reset -c FILE -p PIPELINE [--partition P]
    conduitd cdc setup -c FILE [-p PIPELINE ...] [--apply]
    conduitd tune -c FILE [-r PIPELINE] [--status-url URL ...] [--json]
    conduitd connectors [--json]

`-f/--file` is `-c/--config` under the seed's name; the config defaults to `ingest.yml`.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import gc
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NoReturn

from conduitd import pandas_probe
from conduitd.commands.arguments import COMMANDS, DEFAULT_CONFIG, build_parser
from conduitd.config import Config, PipelineConfig
from conduitd.configfile import load_config
from conduitd.core.redact import redact
from conduitd.destinations.base import DlqFilter
from conduitd.errors import ConduitError, ConfigError, ExitCode, first_conduit_error
from conduitd.ops import telemetry
from conduitd.ops.logs import configure

log = logging.getLogger("conduitd")
BATCH_NAME = "conduit"
"""The seed tool's command name: under it `run` means `run --once` unless told `--daemon`."""
CONFIG_SUFFIXES = (".yml", ".yaml", ".json")

__all__ = ["build_parser", "entry", "main"]


def entry() -> NoReturn:
    """The console scripts' and `python -m conduitd`'s entry point: `main`, then `leave`."""
    pandas_probe.own_process()
    leave(main())


def leave(code: int) -> NoReturn:
    """End the process with `code` as a normal exit would, without the interpreter's teardown.

    The atexit handlers run (logging's flush among them) and stdout and stderr are flushed; what
    is skipped is freeing every loaded module's objects one by one, which costs ~0.2 s after a
    run that loaded pyarrow and the drivers: a fifth of a `--once` run over an empty table. Every
    file and connection is closed by then (the run closes what it opened, files are written
    inside `with` blocks). When a thread other than this one still runs, Python's own exit
    waits for it as usual; so it does under a profiler or tracer (`python -m cProfile -o`,
    coverage), which write their results on the way out."""
    others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    if any(t.is_alive() for t in others) or sys.getprofile() is not None or sys.gettrace() is not None:
        raise SystemExit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing can reach it
            stream.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Run one command; `prog` is the name it was called by (default: from `sys.argv[0]`, so the
    console scripts `conduitd` and `conduit`, both pointing here, behave as their names say)."""
    sys.excepthook = _redacted_excepthook
    name = prog or program_name(sys.argv[0] if sys.argv else "")
    parser = build_parser(name)
    try:
        args = parser.parse_args(with_command(list(sys.argv[1:] if argv is None else argv), name))
    except ConfigError as exc:
        return _report(exc)
    except SystemExit as exit_:
        return int(exit_.code or 0) and int(ExitCode.CONFIG)
    try:
        code = _without_config(args)
        if code is not None:
            return code
        path = config_path(args, name)
        config = load_config(path)
        unknown = [r for r in args.pipeline if r not in {x.name for x in config.resources}]
        if unknown:
            names = ", ".join(x.name for x in config.resources)
            raise ConfigError(f"{path}: no pipeline named {', '.join(unknown)} (defined: {names})")
        configure(config.service.log_format, config.service.log_level)
        return _dispatch(args, config, batch=name == BATCH_NAME)
    except ConduitError as exc:
        return _report(exc)
    except KeyboardInterrupt:
        return int(ExitCode.RUNTIME)
    except Exception as exc:  # noqa: BLE001 - the last net: one line, never a traceback
        return _report_bug(exc)


def program_name(argv0: str) -> str:
    """`conduit` when called by that name (the console script, or `conduit.exe`), else `conduitd`."""
    stem = Path(argv0).name.removesuffix(".exe").removesuffix("-script.py")
    return BATCH_NAME if stem == BATCH_NAME else "conduitd"


def with_command(args: list[str], prog: str) -> list[str]:
    """The arguments with their command: `run` where none is named (`conduitd --once -c FILE`,
    `conduitd ingest.yml`); an unknown word is an error that lists the commands."""
    if not args:
        raise ConfigError(f"name a command: {', '.join(COMMANDS)} (`{prog} --help` describes them)")
    first = args[0]
    if first in COMMANDS or first in ("-h", "--help", "--version"):
        return args
    if first.startswith("-"):
        return args if {"-h", "--help", "--version"} & set(args) else ["run", *args]
    if first.endswith(CONFIG_SUFFIXES) or os.path.isfile(first):
        return ["run", *args]
    raise ConfigError(f"unknown command {first[:60]!r}: the commands are {', '.join(COMMANDS)} "
                      f"(`{prog} COMMAND --help` describes one)")


def config_path(args: argparse.Namespace, prog: str) -> str:
    """The config file named by the command line: `CONFIG`, `-c FILE` or `-f FILE`, else
    `ingest.yml` (the seed tool's default), which must then exist."""
    positional = getattr(args, "config_file", None)
    if positional is not None and args.config is not None and positional != args.config:
        raise ConfigError(f"two config files named ({positional} and {args.config}): name one")
    path: str | None = positional or args.config
    if path is not None:
        return path
    if not os.path.exists(DEFAULT_CONFIG):
        raise ConfigError(f"no config named and there is no {DEFAULT_CONFIG} here: `{prog} {args.command} CONFIG` "
                          "or -c FILE")
    return DEFAULT_CONFIG


def _without_config(args: argparse.Namespace) -> int | None:
    """Run the commands that need no config file (None for the others)."""
    from conduitd import commands

    if args.command == "connectors":
        return _run_async(commands.list_connectors(as_json=args.json))
    if args.command == "template":
        if args.action == "list":
            return _run_async(commands.list_templates())
        if args.action == "info":
            return _run_async(commands.template_info(args.name))
        return _run_async(commands.generate_template(args.name, args.output))
    if args.command == "manifest":
        return _run_async(commands.show_manifest(_manifest_path(args), pipelines=args.pipeline, failed=args.failed,
                                                 as_json=args.json))
    if args.command == "token":
        from conduitd.commands.token import create_token

        return create_token(args.name, args.role, args.projects)
    if args.command == "migrate-config":
        from conduitd.commands.migrate import migrate_config

        return migrate_config(args.config_file)
    return None


def _manifest_path(args: argparse.Namespace) -> str:
    """`-m PATH`, else the config's `service.manifest_path` (`-c FILE`, else ingest.yml if present)."""
    if args.manifest_path:
        return str(args.manifest_path)
    path = args.config or (DEFAULT_CONFIG if os.path.exists(DEFAULT_CONFIG) else None)
    if path is None:
        raise ConfigError("name the manifest: -m PATH, or -c FILE for a config with service.manifest_path")
    manifest = load_config(path).service.manifest_path
    if manifest is None:
        raise ConfigError(f"{path} sets no service.manifest_path (so no run wrote a manifest): name one with -m PATH")
    return manifest


def _report_bug(exc: Exception) -> int:
    """An error no part of conduitd expected is a bug in conduitd: say so in one line (the
    traceback goes to the log at debug level, redacted like everything else)."""
    logging.getLogger("conduitd").debug("unexpected error", exc_info=exc)
    print(redact(f"conduitd: error: unexpected {type(exc).__name__}: {exc} (a bug in conduitd; "
                 "run with service.log_level: debug for the traceback)"), file=sys.stderr)
    return int(ExitCode.RUNTIME)


def _dispatch(args: argparse.Namespace, config: Config, *, batch: bool) -> int:
    from conduitd import commands

    if args.command == "preflight":
        return _run_async(commands.show_preflight(config, args.pipeline))
    if args.command == "validate":
        return _run_async(commands.validate(config, args.pipeline, as_json=args.json))
    if args.command in ("schema", "schema-compare"):
        pipeline = _one_pipeline(config, [args.pipeline_name] if args.pipeline_name else args.pipeline)
        if args.command == "schema":
            fmt = commands.schema_format(args.format, args.output)
            return _run_async(commands.export_schema(config, pipeline, fmt=fmt, output=args.output,
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
    if args.command == "tune":
        from conduitd.commands.guard import guarded
        from conduitd.commands.tune import tune

        return _run_async(guarded(tune)(config, args.pipeline, status_urls=args.status_urls, as_json=args.json))
    return _run(args, config, batch=batch)


def _run(args: argparse.Namespace, config: Config, *, batch: bool) -> int:
    """`run`: a dry run, or a pre-flight (under --once, unless skipped) and the run. Under the
    name `conduit` a run is `--once` unless `--daemon` is given."""
    from conduitd import commands, registry

    pandas_probe.skip_unless_needed(plugins=registry.names_plugins(config))
    if args.dry_run:
        return _run_async(commands.dry_run(config, args.pipeline, as_json=args.json))
    if args.json:
        raise ConfigError("--json is an option of --dry-run")
    once = args.once or (batch and not args.daemon)
    if once and not args.skip_preflight:
        code = _run_async(commands.preflight_before_run(config, args.pipeline))
        if code:
            return code
    gc.set_threshold(100_000, 50, 100)  # decode-heavy loops allocate many short-lived objects
    gc.freeze()  # what startup made (modules, the config) lives to the end: collections skip it, as in benchmarks/
    telemetry.configure_from_environment()
    try:
        return _run_async(commands.run(config, args.pipeline, once=once))
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
