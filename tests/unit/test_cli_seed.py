"""Commands as Conduit Core users type them: the `conduit` name, the config spellings, unknown
commands, templates that load, the manifest reader and the schema format from the suffix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conduitd.cli import build_parser, config_path, main, program_name, with_command
from conduitd.commands import schema_format
from conduitd.commands.manifest import read_entries
from conduitd.commands.template import TEMPLATES, find, text_of
from conduitd.configfile import load_config
from conduitd.errors import ConfigError


@pytest.mark.parametrize(("argv0", "name"), [("/usr/local/bin/conduit", "conduit"), ("conduit.exe", "conduit"),
                                             ("/usr/bin/conduitd", "conduitd"),
                                             ("/x/conduitd/__main__.py", "conduitd")])
def test_the_program_name_decides_the_flavour(argv0: str, name: str) -> None:
    assert program_name(argv0) == name


@pytest.mark.parametrize("argv", [["run", "p.yml"], ["run", "-f", "p.yml"], ["run", "--file", "p.yml"],
                                  ["run", "-c", "p.yml"], ["p.yml"], ["--once", "-c", "p.yml"]])
def test_every_spelling_names_the_config(argv: list[str]) -> None:
    args = build_parser("conduit").parse_args(with_command(argv, "conduit"))
    assert args.command == "run" and config_path(args, "conduit") == "p.yml"


def test_the_default_config_is_ingest_yml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args(["run"])
    with pytest.raises(ConfigError, match=r"no ingest\.yml here"):
        config_path(args, "conduit")
    (tmp_path / "ingest.yml").write_text("{}")
    assert config_path(args, "conduit") == "ingest.yml"


def test_two_different_configs_are_refused() -> None:
    args = build_parser().parse_args(["run", "a.yml", "-c", "b.yml"])
    with pytest.raises(ConfigError, match="name one"):
        config_path(args, "conduitd")


def test_run_modes_exclude_each_other_and_seed_options_parse() -> None:
    args = build_parser("conduit").parse_args(["run", "p.yml", "-r", "orders", "--dry-run", "--skip-preflight"])
    assert (args.dry_run, args.skip_preflight, args.pipeline) == (True, True, ["orders"])
    assert main(["run", "p.yml", "--once", "--daemon"]) == 2


def test_an_unknown_command_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"], prog="conduit") == 2
    err = capsys.readouterr().err
    assert "unknown command 'frobnicate'" in err
    for command in ("run", "preflight", "validate", "schema", "manifest", "template", "dlq", "checkpoints"):
        assert command in err


def test_no_command_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], prog="conduit") == 2
    assert "name a command: run, preflight" in capsys.readouterr().err


@pytest.mark.parametrize(("fmt", "output", "expected"), [(None, "out.yaml", "yaml"), (None, "out.YML", "yaml"),
                                                         (None, "out.json", "json"), (None, None, "json"),
                                                         ("json", "out.yaml", "json")])
def test_schema_format_follows_the_output_suffix(fmt: str | None, output: str | None, expected: str) -> None:
    assert schema_format(fmt, output) == expected


def test_schema_takes_the_seed_spelling() -> None:
    args = build_parser("conduit").parse_args(["schema", "orders", "-f", "p.yml", "-o", "out.yaml"])
    assert (args.pipeline_name, args.config, args.output, args.format) == ("orders", "p.yml", "out.yaml", None)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.name)
def test_every_template_loads_as_a_config(template: object, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    name = template.name  # type: ignore[attr-defined]
    values = {"POSTGRES_DSN": "postgresql://app:secret@db:5432/wh", "SOURCE_DSN": "postgresql://r@src/app",
              "MYSQL_DSN": "mysql://app:pw@db:3306/wh", "KAFKA_BROKERS": "k1:9092,k2:9092",
              "AWS_REGION": "eu-west-1", "MYSQL_HOST": "db2", "MYSQL_USER": "reader", "MYSQL_PWD": "pw"}
    for variable in template.variables:  # type: ignore[attr-defined]
        monkeypatch.setenv(variable, values[variable])
    path = tmp_path / "pipeline.yml"
    path.write_text(text_of(find(name)))
    config = load_config(str(path))
    assert config.resources and {s.type for s in config.sources} == {template.source.split()[0]}  # type: ignore[attr-defined]
    assert {d.type for d in config.destinations} == {template.destination}  # type: ignore[attr-defined]


def test_a_template_needs_its_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTGRES_DSN", raising=False)
    path = tmp_path / "pipeline.yml"
    path.write_text(text_of(find("file_to_postgres")))
    with pytest.raises(ConfigError, match="POSTGRES_DSN"):
        load_config(str(path))


def test_template_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["template", "list"], prog="conduit") == 0
    listing = capsys.readouterr().out
    assert all(t.name in listing for t in TEMPLATES)
    assert main(["template", "info", "csv_to_postgresql"], prog="conduit") == 0  # the seed's name
    info = capsys.readouterr().out
    assert "file_to_postgres" in info and "POSTGRES_DSN" in info and "conduitd[postgres]" in info
    assert main(["template", "generate", "file_to_sqlite"], prog="conduit") == 0
    assert capsys.readouterr().out == text_of(find("file_to_sqlite"))
    target = tmp_path / "pipeline.yml"
    assert main(["template", "generate", "kafka_to_postgres", "-o", str(target)], prog="conduit") == 0
    assert target.read_text() == text_of(find("kafka_to_postgres"))
    target.write_text("# edited\n")
    assert main(["template", "generate", "kafka_to_postgres", "-o", str(target)], prog="conduit") == 2
    assert target.read_text() == "# edited\n" and "exists already" in capsys.readouterr().err
    assert main(["template", "info", "csv_to_bigquery"], prog="conduit") == 2
    assert "no template named 'csv_to_bigquery'" in capsys.readouterr().err


def _record(status: str, exit_code: int, *pipelines: tuple[str, str, str]) -> str:
    return json.dumps({"kind": "run", "started": "2025-01-01T00:00:00.000Z", "ended": "2025-01-01T00:00:01.000Z",
                       "duration_s": 1.0, "status": status, "exit_code": exit_code, "pipelines": [
                           {"pipeline": name, "source": "f", "destination": "d", "table": name, "state": state,
                            "status": pstatus, "rows_read": 3, "rows_written": 2, "dlq_rows": 1, "error": None}
                           for name, state, pstatus in pipelines]})


def test_manifest_entries_and_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "manifest.jsonl"
    path.write_text("\n".join([
        _record("success", 0, ("orders", "done", "success"), ("users", "done", "success")),
        _record("failed", 3, ("orders", "done", "success"), ("users", "failed", "failed")),
        _record("failed", 1, ("orders", "stopped", "success"), ("users", "running", "success")),
    ]) + "\n")
    entries = read_entries(path.read_text())
    assert [(e.pipeline, e.status) for e in entries] == [
        ("orders", "success"), ("users", "success"), ("orders", "success"), ("users", "failed"),
        ("orders", "success"), ("users", "failed")]  # the last run failed where its pipeline had not finished
    assert main(["manifest", "-m", str(path), "--failed", "--json"], prog="conduit") == 0
    failed = json.loads(capsys.readouterr().out)
    assert [(e["pipeline"], e["exit_code"]) for e in failed] == [("users", 3), ("users", 1)]
    assert main(["manifest", "-m", str(path), "-p", "orders"], prog="conduit") == 0
    table = capsys.readouterr().out
    assert table.count("d.orders") == 3 and "users" not in table and "3 entries" in table


def test_the_seed_manifest_is_read_too() -> None:
    seed = {"version": "1.0", "runs": [{"pipeline_name": "users_pg", "source_type": "csv",
                                        "destination_type": "postgresql", "started_at": "2025-01-01T00:00:00",
                                        "completed_at": "2025-01-01T00:01:04", "status": "failed",
                                        "records_read": 10, "records_written": 0, "records_failed": 0,
                                        "duration_seconds": 64.2, "error_message": "boom"}]}
    (entry,) = read_entries(json.dumps(seed))
    assert (entry.pipeline, entry.status, entry.kind, entry.rows_read, entry.error) == (
        "users_pg", "failed", "seed", 10, "boom")


def test_a_manifest_needs_a_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["manifest"], prog="conduit") == 2
    assert "-m PATH" in capsys.readouterr().err
    assert main(["manifest", "-m", str(tmp_path / "none.jsonl")], prog="conduit") == 2
    assert "cannot read the manifest" in capsys.readouterr().err
