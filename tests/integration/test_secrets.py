"""No secret in any output, and any password connects in both DSN forms (issue 8, item 10).

A PostgreSQL server of this module's own checks passwords for real (scram-sha-256 over TCP; the
shared test server trusts every login, so a wrong password would go unnoticed there). Roles are
created with generated passwords holding every printable ASCII punctuation character, spaces and
non-ASCII letters, and dropped afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conduitd.config import PostgresDestinationConfig
from conduitd.destinations.postgres import PostgresDestination
from conduitd.errors import DependencyUnreachable, describe
from tests.helpers.daemon import conduitd, start_conduitd, stop_daemon, write_config
from tests.helpers.kafka import free_port
from tests.helpers.private_pg import PrivatePostgres, _as_postgres, _bin

PUNCTUATION = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"
PASSWORDS = st.text(alphabet=st.sampled_from(PUNCTUATION + " abcXYZ019éß€日本"), min_size=6, max_size=24).map(
    lambda core: "Zq" + core + "9w")  # never a substring of anything else the outputs hold


@pytest.fixture(scope="module")
def scram_pg() -> Iterator[PrivatePostgres]:
    """A private server: trust over its Unix socket (for the test's own admin connection),
    scram-sha-256 over TCP (for conduitd)."""
    directory = Path(tempfile.mkdtemp(prefix="conduitd-scram-"))
    os.chmod(directory, 0o755)
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    subprocess.run(_as_postgres(_bin("initdb"), "-D", str(directory / "data"), "-U", "postgres",
                                "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"),
                   check=True, capture_output=True)
    server = PrivatePostgres(directory, free_port())
    server.start()
    try:
        yield server
    finally:
        server.remove()


async def admin(server: PrivatePostgres, *statements: tuple[str, ...]) -> None:
    conn = await asyncpg.connect(host=str(server.directory), port=server.port, user="postgres", database="postgres")
    try:
        for sql, *args in statements:
            # CREATE ROLE takes no bind parameters: the server quotes the literal itself.
            await conn.execute(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


def create_role(server: PrivatePostgres, password: str) -> str:
    role = f"r_{uuid.uuid4().hex[:8]}"
    asyncio.run(admin(server, ("SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', $1::text, $2::text)", role, password),
                      ("SELECT format('GRANT CREATE ON DATABASE postgres TO %I', $1::text)", role)))
    return role


def drop_role(server: PrivatePostgres, role: str) -> None:
    asyncio.run(admin(server, ("SELECT format('DROP OWNED BY %I', $1::text)", role),
                      ("SELECT format('DROP ROLE %I', $1::text)", role)))


def keyword_dsn(host: str, port: int, role: str, password: str) -> str:
    quoted = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"host={host} port={port} user={role} password={quoted} dbname=postgres"


def dsn_forms(host: str, port: int, role: str, password: str) -> list[str]:
    forms = [keyword_dsn(host, port, role, password),
             f"postgresql://{role}:{quote(password, safe='')}@{host}:{port}/postgres"]
    if re.search(r"%[0-9A-Fa-f]{2}", password) is None:  # raw in a URL unless it holds a %XX escape
        forms.append(f"postgresql://{role}:{password}@{host}:{port}/postgres")
    return forms


def spellings(password: str) -> list[str]:
    return [password, quote(password, safe=""), json.dumps(password)[1:-1], repr(password)[1:-1]]


def assert_no_secret(password: str, *outputs: str) -> None:
    for output in outputs:
        for spelling in spellings(password):
            assert spelling not in output, f"{spelling!r} leaked in: {output[:2000]}"


async def connect_once(dsn: str) -> None:
    destination = PostgresDestination(PostgresDestinationConfig.model_validate(
        {"name": "pg", "type": "postgres", "dsn": dsn, "schema": "public", "connect_timeout": 5}))
    await destination.open(read_only=True)
    try:
        await destination.ping()
    finally:
        await destination.close()


@settings(max_examples=20)
@given(password=PASSWORDS)
def test_any_password_connects_in_both_forms_and_a_wrong_one_is_never_shown(
        scram_pg: PrivatePostgres, password: str) -> None:
    role = create_role(scram_pg, password)
    try:
        for dsn in dsn_forms("127.0.0.1", scram_pg.port, role, password):
            asyncio.run(connect_once(dsn))
        wrong = password[::-1] + "x"
        for dsn in dsn_forms("127.0.0.1", scram_pg.port, role, wrong):
            with pytest.raises(DependencyUnreachable) as caught:
                asyncio.run(connect_once(dsn))
            assert caught.value.exit_code == 5
            assert_no_secret(wrong, str(caught.value), describe(caught.value))
    finally:
        drop_role(scram_pg, role)


def config_for(tmp_path: Path, dsn: str, schema: str, **service: Any) -> Path:
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": 1, "note": "a"}\n{"id": 2, "note": "b"}\n')
    return write_config(tmp_path / "conduitd.yaml", {
        "service": {"once_retry_timeout": "1s", "retry_max_wait": "200ms", "manifest_path": str(tmp_path / "m.jsonl"),
                    **service},
        "sources": [{"name": "files", "type": "file", "path": str(data)}],
        # `$` is written `$$` in a config value (a `${` would be a variable).
        "destinations": [{"name": "pg", "type": "postgres", "dsn": dsn.replace("$", "$$"), "schema": schema,
                          "connect_timeout": 3}],
        "resources": [{"name": "notes", "source": "files", "destination": "pg", "table": f"n_{uuid.uuid4().hex[:6]}"}],
    })


def daemon_status(tmp_path: Path, config: Path, port: int) -> tuple[str, str]:
    """Start the daemon, wait until /status shows the pipeline's error, return (/status, log)."""
    log = tmp_path / "daemon.log"
    proc = start_conduitd("run", "-c", str(config), log=log)
    body = ""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as response:
                    body = response.read().decode()
                if any(p["last_error"] for p in json.loads(body)["pipelines"]):
                    break
            except OSError:
                pass
            time.sleep(0.2)
    finally:
        stop_daemon(proc)
    assert any(p["last_error"] for p in json.loads(body)["pipelines"]), body
    return body, log.read_text(errors="replace")


HOSTILE = "Zq" + PUNCTUATION + " é日本 9w"
"""Every printable ASCII punctuation character, a space and non-ASCII letters, in one password."""


@pytest.mark.parametrize("failure, form", [("password", 2), ("port", 0), ("host", 1)])
def test_no_output_of_any_command_holds_the_password(
        scram_pg: PrivatePostgres, tmp_path: Path, failure: str, form: int) -> None:
    """validate (text, JSON), run --once, its manifest, the daemon's /status and log: a wrong
    password, port or host, in each DSN form (keyword, URL %-encoded, URL raw)."""
    role = create_role(scram_pg, HOSTILE)
    try:
        host, port, password = "127.0.0.1", scram_pg.port, HOSTILE
        if failure == "password":
            password = HOSTILE + "!x"
        elif failure == "port":
            port = free_port()
        else:
            host = "127.0.0.2"  # the server listens on 127.0.0.1 only
        health = free_port()
        config = config_for(tmp_path, dsn_forms(host, port, role, password)[form], role, health_port=health,
                            log_format="json")
        outputs = []
        for args in (["validate"], ["validate", "--json"], ["run", "--once"]):
            result = conduitd(*args, "-c", str(config))
            assert result.returncode == 5, result.stdout + result.stderr
            assert "Traceback" not in result.stderr
            outputs += [result.stdout, result.stderr]
        manifest = (tmp_path / "m.jsonl").read_text()
        assert json.loads(manifest.splitlines()[-1])["status"] == "failed"
        status, log = daemon_status(tmp_path, config, health)
        assert_no_secret(password, *outputs, manifest, status, log)
    finally:
        drop_role(scram_pg, role)


@pytest.mark.parametrize("form", [0, 2])
def test_the_right_password_works_and_shows_nowhere(scram_pg: PrivatePostgres, tmp_path: Path, form: int) -> None:
    role = create_role(scram_pg, HOSTILE)
    try:
        good = config_for(tmp_path, dsn_forms("127.0.0.1", scram_pg.port, role, HOSTILE)[form], role,
                          log_format="text", log_level="debug")
        result = conduitd("run", "--once", "-c", str(good))
        assert result.returncode == 0, result.stderr
        assert "2 rows written" in result.stderr
        assert_no_secret(HOSTILE, result.stdout, result.stderr, (tmp_path / "m.jsonl").read_text())
    finally:
        drop_role(scram_pg, role)
