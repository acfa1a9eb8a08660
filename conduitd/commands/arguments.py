"""The command line of `conduitd` and of its batch name `conduit` (the seed tool's): one parser.

The config file is named by `-c/--config` or the seed's `-f/--file` (or, for `run` and
`preflight`, as the first argument) and defaults to `ingest.yml`, the seed's default."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from conduitd import __version__

DEFAULT_CONFIG = "ingest.yml"
COMMANDS = ("run", "preflight", "validate", "schema", "schema-compare", "manifest", "template", "migrate-config",
            "dlq", "checkpoints", "cdc", "tune", "connectors", "token")
"""Every command, in the order `--help` and an unknown command list them."""


def build_parser(prog: str = "conduitd") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Streaming ingestion with checkpointed commits.")
    parser.add_argument("--version", action="version", version=f"conduitd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _run(commands, batch=prog == "conduit")
    preflight = commands.add_parser("preflight", help="pre-flight checks (what validate checks), as PASS/WARN/FAIL")
    preflight.add_argument("config_file", metavar="CONFIG", nargs="?", help=f"the config (default {DEFAULT_CONFIG})")
    _with_config(preflight)
    validate = commands.add_parser("validate", help="check config, rules, connectivity and schemas; writes nothing")
    _with_config(validate)
    validate.add_argument("--json", action="store_true", help="JSON output")
    _schema(commands)
    _manifest(commands)
    _template(commands)
    migrate = commands.add_parser("migrate-config", help="print a Conduit Core config in conduitd's own shape, "
                                                         "each changed key commented")
    migrate.add_argument("config_file", metavar="CONFIG", help="the seed config")
    _dlq(commands)
    _tune(commands)
    checkpoints = commands.add_parser("checkpoints", help="show or reset stored positions")
    actions = checkpoints.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print stored positions")
    _with_config(show)
    show.add_argument("--json", action="store_true", help="JSON output")
    reset = actions.add_parser("reset", help="forget stored positions: the next run starts over")
    _with_config(reset)
    reset.add_argument("--partition", help="only this partition (e.g. a file path)")
    cdc = commands.add_parser("cdc", help="prepare source tables for change capture")
    cdc_actions = cdc.add_subparsers(dest="action", metavar="ACTION", required=True)
    setup = cdc_actions.add_parser("setup", help="print (or --apply) the DDL of PostgreSQL's exact mode (an xid8 "
                                                 "column, its trigger and index)")
    _with_config(setup)
    setup.add_argument("--apply", action="store_true", help="run the DDL on the source (needs ALTER rights)")
    token = commands.add_parser("token", help="make API tokens (service.api)")
    token_actions = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = token_actions.add_parser("create", help="print a new token once, and its entry (hash only) for the "
                                                     "tokens file")
    create.add_argument("--name", required=True, help="who the token is for (shown in the audit log)")
    create.add_argument("--role", required=True, choices=("viewer", "operator", "admin"))
    create.add_argument("--project", dest="projects", action="append", default=[], metavar="PROJECT",
                        help="a project the token reaches; may be repeated; '*' for every project")
    connectors = commands.add_parser("connectors", help="list the installed sources, destinations and DLQ sinks")
    connectors.add_argument("--json", action="store_true", help="JSON output")
    return parser


def _with_config(p: argparse.ArgumentParser, *, pipelines: bool = True) -> None:
    p.add_argument("-c", "--config", "-f", "--file", dest="config", metavar="FILE",
                   help=f"the YAML config file (default {DEFAULT_CONFIG}); -f/--file is the seed tool's spelling")
    if pipelines:
        p.add_argument("-p", "--pipeline", "-r", "--resource", dest="pipeline", action="append", default=[],
                       metavar="PIPELINE",
                       help="only this pipeline (an entry of `resources:`); may be repeated; -r/--resource is "
                            "the same option under its earlier name")


def _run(commands: argparse._SubParsersAction[argparse.ArgumentParser], *, batch: bool) -> None:
    run = commands.add_parser("run", help="run the pipelines (the default command)")
    run.add_argument("config_file", metavar="CONFIG", nargs="?", help=f"the config (default {DEFAULT_CONFIG})")
    _with_config(run)
    modes = run.add_mutually_exclusive_group()
    modes.add_argument("--once", action="store_true", help="read what the sources hold now, commit it, and exit"
                       + (" (the default of `conduit`)" if batch else ""))
    modes.add_argument("--daemon", action="store_true", help="run until SIGTERM/SIGINT"
                       + ("" if batch else " (the default of `conduitd`)"))
    modes.add_argument("-d", "--dry-run", action="store_true",
                       help="read, decode, apply the rules and the schema plan against the live table, and report "
                            "what would be written, rejected and changed; writes nothing")
    run.add_argument("--skip-preflight", action="store_true", help="start a --once run without its pre-flight checks")
    run.add_argument("--json", action="store_true", help="--dry-run: JSON output")


def _schema(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def with_one_pipeline(p: argparse.ArgumentParser) -> None:
        p.add_argument("pipeline_name", metavar="PIPELINE", nargs="?", help="the pipeline (or -p PIPELINE)")
        _with_config(p)
        p.add_argument("--sample-size", type=int, default=1000, help="records to sample (default 1000)")

    schema = commands.add_parser("schema", help="infer a pipeline's source schema and export it")
    with_one_pipeline(schema)
    schema.add_argument("--format", choices=("json", "yaml"),
                        help="default: from the -o file's suffix (.yaml/.yml: yaml), else json")
    schema.add_argument("-o", "--output", help="write to this file instead of standard output")
    compare = commands.add_parser("schema-compare", help="drift between the source and its table; exit 4 on drift")
    with_one_pipeline(compare)
    compare.add_argument("-b", "--baseline", help="compare with a schema file written by `conduitd schema`")
    compare.add_argument("--json", action="store_true", help="JSON output")


def _manifest(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    manifest = commands.add_parser("manifest", help="the run history in the manifest file")
    manifest.add_argument("-m", "--manifest-path", dest="manifest_path", metavar="PATH",
                          help="the manifest (default: service.manifest_path of the config)")
    manifest.add_argument("-c", "--config", "-f", "--file", dest="config", metavar="FILE",
                          help=f"the config whose service.manifest_path to read (default {DEFAULT_CONFIG})")
    manifest.add_argument("-p", "--pipeline", "--pipeline-name", "-r", "--resource", dest="pipeline",
                          action="append", default=[], metavar="NAME", help="only this pipeline; may be repeated")
    manifest.add_argument("--failed", action="store_true", help="only failed runs")
    manifest.add_argument("--json", action="store_true", help="JSON output")


def _template(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    template = commands.add_parser("template", help="starter configs for the source -> destination pairs")
    actions = template.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="the templates")
    info = actions.add_parser("info", help="what a template holds and needs")
    info.add_argument("name", metavar="NAME")
    generate = actions.add_parser("generate", help="print a template (or write it with -o)")
    generate.add_argument("name", metavar="NAME")
    generate.add_argument("-o", "--output", metavar="FILE", help="write to this file (it must not exist)")


def _dlq(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = commands.add_parser("dlq", help="list or replay rejected records")
    dlq_actions = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (("list", "show DLQ rows"), ("replay", "re-run DLQ rows through the current rules and "
                                                               "schema; the ones that pass move to the table")):
        action = dlq_actions.add_parser(name, help=text)
        _with_config(action)
        action.add_argument("--rule", help="only rows rejected by this rule (e.g. decode, cast, not_null:email)")
        action.add_argument("--since", type=_timestamp, help="only rows rejected at or after (ISO 8601)")
        action.add_argument("--until", type=_timestamp, help="only rows rejected before (ISO 8601)")
        action.add_argument("--limit", type=int, help="at most this many rows")
        if name == "list":
            action.add_argument("--json", action="store_true", help="JSON output")


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _tune(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tune = commands.add_parser("tune", help="what a running daemon measured of each pipeline's batches, and the "
                                            "batch size, poll size and replicas it suggests; writes nothing")
    _with_config(tune)
    tune.add_argument("--status-url", dest="status_urls", action="append", default=[], metavar="URL",
                      help="the daemon's /status (default: from service.health_host and health_port); repeat it "
                           "for every replica to count partitions and replicas over the fleet")
    tune.add_argument("--json", action="store_true", help="JSON output")
