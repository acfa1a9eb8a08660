"""API tokens: only hashes are stored, entries come from the file and the environment, roles grow,
projects fence, and a bad tokens file is a config error naming the file and the key (in
`validate` and the pre-flight too)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conduitd.api.tokens import Tokens, hash_token, new_token
from conduitd.apisettings import TOKENS_ENV, ApiConfig
from conduitd.errors import ConfigError
from tests.helpers.inprocess import Cli, in_process_cli


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):  # type: ignore[no-untyped-def]
    yield from in_process_cli(capsys)


def entry(name: str, token: str, role: str, projects: list[str]) -> dict[str, object]:
    return {"name": name, "sha256": hash_token(token), "role": role, "projects": projects}


def test_tokens_from_the_file_and_the_environment_authenticate_by_their_hash(tmp_path: Path) -> None:
    first, second = new_token(), new_token()
    assert first.startswith("cdt_") and first != second
    path = tmp_path / "tokens.yml"
    path.write_text(yaml.safe_dump({"tokens": [entry("ops", first, "operator", ["a", "b"])]}))
    assert first not in path.read_text()
    environ = {TOKENS_ENV: yaml.safe_dump({"tokens": [entry("root", second, "admin", ["*"])]})}
    tokens = Tokens.load(ApiConfig(tokens_file=str(path)), environ)
    ops, root = tokens.authenticate(first), tokens.authenticate(second)
    assert ops is not None and root is not None
    assert (ops.name, ops.role, ops.can("operator"), ops.can("admin")) == ("ops", "operator", True, False)
    assert ops.sees("a") and ops.sees("b") and not ops.sees("c")
    assert root.can("admin") and root.sees("anything")
    assert tokens.authenticate(first + "x") is None and tokens.authenticate("") is None


@pytest.mark.parametrize(("text", "expected"), [
    ("tokens: [{name: a, sha256: xyz, role: viewer, projects: [a]}]", "tokens.0.sha256"),
    (f"tokens: [{{name: a, sha256: {'a' * 64}, role: boss, projects: [a]}}]", "tokens.0.role"),
    (f"tokens: [{{name: a, sha256: {'a' * 64}, role: viewer, projects: []}}]", "tokens.0.projects"),
    ("tokens: [{name: a", "not valid YAML"),
])
def test_a_bad_entry_names_the_file_and_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "tokens.yml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        Tokens.load(ApiConfig(tokens_file=str(path)), {})
    assert str(path) in str(raised.value) and expected in str(raised.value)


def test_one_name_for_two_tokens_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yml"
    path.write_text(yaml.safe_dump({"tokens": [entry("a", new_token(), "viewer", ["a"]),
                                               entry("a", new_token(), "admin", ["a"])]}))
    with pytest.raises(ConfigError, match="more than one token"):
        Tokens.load(ApiConfig(tokens_file=str(path)), {})


def test_validate_and_the_preflight_check_the_tokens_file(tmp_path: Path, cli: Cli) -> None:
    (tmp_path / "in.jsonl").write_text('{"id": 1}\n')
    tokens = tmp_path / "tokens.yml"
    config = tmp_path / "c.yml"
    config.write_text(yaml.safe_dump({
        "service": {"api": {"port": 0, "tokens_file": str(tokens)}},
        "sources": [{"name": "s", "type": "file", "path": str(tmp_path / "in.jsonl")}],
        "destinations": [{"name": "d", "type": "sqlite", "path": str(tmp_path / "t.db")}],
        "resources": [{"name": "p", "source": "s", "destination": "d"}]}))
    code, out, _ = cli("validate", "-c", str(config))
    assert code == 2 and "cannot read" in out and str(tokens) in out
    tokens.write_text("tokens: []\n")
    code, out, _ = cli("validate", "-c", str(config))
    assert code == 0 and "every API request will be refused" in out
    tokens.write_text("tokens: [{name: a, sha256: xyz, role: viewer, projects: [a]}]\n")
    code, _, err = cli("--once", "-c", str(config))
    assert code == 2 and "tokens.0.sha256" in err
    assert not (tmp_path / "t.db").exists() or "p" not in (tmp_path / "t.db").read_bytes().decode("latin-1")


def test_token_create_prints_the_token_once_and_only_its_hash_for_the_file(cli: Cli) -> None:
    code, out, err = cli("token", "create", "--name", "ci", "--role", "operator", "--project", "sales")
    assert code == 0
    token = next(line.strip() for line in err.splitlines() if line.strip().startswith("cdt_"))
    [written] = yaml.safe_load(out)
    assert written == {"name": "ci", "sha256": hash_token(token), "role": "operator", "projects": ["sales"]}
    assert token not in out
    assert cli("token", "create", "--name", "ci", "--role", "viewer")[0] == 2
