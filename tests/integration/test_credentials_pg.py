"""A PostgreSQL password kept out of the config (`password: {from: file|env}`) is the one the
connection uses, and never appears in any output (issue 9, item 5). Against a server that checks
passwords (scram over TCP): the shared test server trusts every login."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.helpers.daemon import conduitd, write_config
from tests.helpers.private_pg import PrivatePostgres
from tests.integration.test_secrets import HOSTILE, assert_no_secret, create_role, drop_role, scram_pg

__all__ = ["scram_pg"]  # the module-scoped server fixture, shared with test_secrets


def config_for(tmp_path: Path, server: PrivatePostgres, role: str, password: dict[str, Any]) -> Path:
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": 1}\n{"id": 2}\n')
    return write_config(tmp_path / "conduitd.yaml", {
        "service": {"once_retry_timeout": "1s", "retry_max_wait": "200ms"},
        "sources": [{"name": "files", "type": "file", "path": str(data)}],
        "destinations": [{"name": "pg", "type": "postgres", "schema": role, "connect_timeout": 3,
                          "dsn": f"postgresql://{role}@127.0.0.1:{server.port}/postgres", "password": password}],
        "resources": [{"name": "ids", "source": "files", "destination": "pg", "table": f"t_{uuid.uuid4().hex[:6]}"}],
    })


def test_password_from_a_file_or_the_environment_connects(scram_pg: PrivatePostgres, tmp_path: Path) -> None:
    role = create_role(scram_pg, HOSTILE)
    try:
        secret = tmp_path / "pg-password"
        secret.write_text(HOSTILE + "\n")
        result = conduitd("run", "--once", "-c", str(config_for(tmp_path, scram_pg, role,
                                                                  {"from": "file", "path": str(secret)})))
        assert result.returncode == 0, result.stderr
        config = config_for(tmp_path, scram_pg, role, {"from": "env", "name": "CONDUITD_TEST_PG_PASSWORD"})
        assert conduitd("validate", "-c", str(config), env={"CONDUITD_TEST_PG_PASSWORD": HOSTILE}).returncode == 0
        wrong = HOSTILE + "!x"
        result = conduitd("run", "--once", "-c", str(config), env={"CONDUITD_TEST_PG_PASSWORD": wrong})
        assert result.returncode == 5, result.stdout + result.stderr  # the password was sent, and refused
        assert_no_secret(wrong, result.stdout, result.stderr)
    finally:
        drop_role(scram_pg, role)
