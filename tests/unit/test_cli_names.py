"""The CLI says pipeline; the earlier spelling -r/--resource keeps working as the same option."""
import pytest

from conduitd.cli import build_parser


@pytest.mark.parametrize("flag", ["-p", "--pipeline", "-r", "--resource"])
def test_every_spelling_of_the_pipeline_option_selects_pipelines(flag: str) -> None:
    args = build_parser().parse_args(["run", "-c", "x.yaml", flag, "orders", flag, "refunds"])
    assert args.pipeline == ["orders", "refunds"]


@pytest.mark.parametrize("command", [["validate"], ["dlq", "list"], ["checkpoints", "show"]])
def test_commands_taking_pipelines_accept_both_spellings_mixed(command: list[str]) -> None:
    args = build_parser().parse_args([*command, "-c", "x.yaml", "-p", "orders", "-r", "refunds"])
    assert args.pipeline == ["orders", "refunds"]


def test_schema_takes_the_pipeline_as_a_positional() -> None:
    args = build_parser().parse_args(["schema", "orders", "-c", "x.yaml"])
    assert (args.pipeline_name, args.pipeline) == ("orders", [])


def test_help_names_the_pipeline_option() -> None:
    text = build_parser()._subparsers._group_actions[0].choices["run"].format_help()  # type: ignore[union-attr]
    assert "-p PIPELINE, --pipeline PIPELINE, -r PIPELINE, --resource PIPELINE" in text
