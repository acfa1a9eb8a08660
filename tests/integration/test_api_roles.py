"""Every operation of the OpenAPI document against every fence: no token is 401, a viewer gets
403 on every mutation, a token of project b cannot tell project a's pipelines from pipelines that
do not exist (404, and lists leave them out), and no response ever holds a secret (a PostgreSQL
password in a destination's DSN, a Kafka `sasl.password`). The audit log shows each caller their
projects' entries, merged across destinations and paged without loss or repeat; the token list
is for admins and never shows a hash.

The OpenAPI document itself is public (FastAPI serves it without a token): it describes the API,
not the daemon's pipelines or data."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from conduitd.api.tokens import hash_token, new_token
from conduitd.apisettings import TOKENS_ENV
from tests.helpers.api import Daemon, serving, until

PG_PASSWORD = f"pw-{uuid.uuid4().hex}"
KAFKA_PASSWORD = f"sasl-{uuid.uuid4().hex}"
SECRETS = (PG_PASSWORD, KAFKA_PASSWORD)
A_NAMES = ("alpha_orders", "alpha_idle", "alpha_kafka")
NOWHERE = "nowhere_zz"
PROBLEM = "application/problem+json"


@pytest.fixture
def pg_user(pg_dsn: str, pg_schema: str) -> Iterator[str]:
    """A DSN of a role of its own with a password no other text holds, over `pg_schema`."""
    import asyncio

    import asyncpg

    role = f"api_{uuid.uuid4().hex[:10]}"

    async def run(*statements: str) -> None:
        conn = await asyncpg.connect(pg_dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run(f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{PG_PASSWORD}'",
                    f'GRANT USAGE, CREATE ON SCHEMA "{pg_schema}" TO "{role}"'))
    parts = urlsplit(pg_dsn)
    netloc = f"{role}:{PG_PASSWORD}@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    yield urlunsplit(parts._replace(netloc=netloc))
    asyncio.run(run(f'DROP OWNED BY "{role}"', f'DROP ROLE "{role}"'))


@pytest.fixture
def admin_b(monkeypatch: pytest.MonkeyPatch) -> str:
    """A token of the admin role over project b only (beside the helper's tokens)."""
    token = new_token()
    monkeypatch.setenv(TOKENS_ENV, json.dumps({"tokens": [
        {"name": "admin-b", "sha256": hash_token(token), "role": "admin", "projects": ["b"]}]}))
    return token


def config(tmp_path: Path, dsn: str, schema: str) -> dict[str, Any]:
    for name in ("a", "b"):
        (tmp_path / name).mkdir(exist_ok=True)
    fast = {"max_wait": 0.05}
    return {
        "sources": [
            {"name": "src_a", "type": "file", "path": str(tmp_path / "a"), "format": "jsonl", "poll_interval": 0.05},
            {"name": "src_b", "type": "file", "path": str(tmp_path / "b"), "format": "jsonl", "poll_interval": 0.05},
            {"name": "stream", "type": "kafka", "brokers": "127.0.0.1:1", "topics": ["t"], "group_id": "g",
             "client": {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                        "sasl.username": "u", "sasl.password": KAFKA_PASSWORD}}],
        "destinations": [{"name": "wh", "type": "postgres", "dsn": dsn, "schema": schema},
                         {"name": "db", "type": "sqlite", "path": str(tmp_path / "t.db")}],
        "resources": [
            {"name": "alpha_orders", "source": "src_a", "destination": "wh", "project": "a", "batch": fast},
            {"name": "alpha_idle", "source": "src_a", "destination": "wh", "project": "a", "table": "idle"},
            {"name": "alpha_kafka", "source": "stream", "destination": "wh", "project": "a", "table": "k"},
            {"name": "beta_orders", "source": "src_b", "destination": "db", "project": "b", "batch": fast}]}


def append(path: Path, first: int, count: int) -> None:
    with path.open("a") as f:
        for i in range(first, first + count):
            f.write(json.dumps({"id": i}) + "\n")


class Recorder:
    """Every response of the test, for the secret check at the end."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.seen: list[tuple[str, httpx.Response]] = []

    async def call(self, who: str | None, method: str, path: str, **kw: Any) -> httpx.Response:
        async with self.daemon.client(who) as client:
            answer = await client.request(method, path, **kw)
        self.seen.append((f"{who} {method} {path}", answer))
        return answer

    def leaks(self) -> list[str]:
        return [what for what, answer in self.seen for secret in SECRETS
                if secret in answer.text or secret in str(answer.headers)]


class Fences:
    """Failures of the walk, gathered so that one run names all of them."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def expect(self, answer: httpx.Response, status: int, what: str) -> bool:
        if answer.status_code != status:
            self.failed.append(f"{what}: {answer.status_code} (expected {status}): {answer.text[:300]}")
        elif status >= 400 and answer.headers.get("content-type") != PROBLEM:
            self.failed.append(f"{what}: {answer.headers.get('content-type')} is not {PROBLEM}")
        else:
            return True
        return False


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            yield method.upper(), path, op


def example(schema: dict[str, Any], doc: dict[str, Any]) -> Any:
    """The smallest value the schema takes (required properties only)."""
    if "$ref" in schema:
        return example(doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]], doc)
    for alternative in ("anyOf", "oneOf", "allOf"):
        if alternative in schema:
            options = [s for s in schema[alternative] if s.get("type") != "null"]
            return example(options[0], doc)
    if "enum" in schema:
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if kind == "object":
        return {k: example(v, doc) for k, v in schema.get("properties", {}).items() if k in schema.get("required", [])}
    if kind == "array":
        return [example(schema.get("items", {}), doc)] * schema.get("minItems", 0)
    return {"integer": 1, "number": 1, "boolean": False}.get(str(kind), "x")


def request(doc: dict[str, Any], method: str, path: str, op: dict[str, Any], name: str, run: str
            ) -> tuple[str, dict[str, Any]]:
    """The URL of `op` for pipeline `name` (and run `run`), and a valid body if it takes one."""
    url = path.replace("{name}", name).replace("{run_id}", run)
    for param in op.get("parameters", []):
        if param["in"] == "path" and f"{{{param['name']}}}" in url:
            url = url.replace(f"{{{param['name']}}}", str(example(param.get("schema", {}), doc)))
    return url, {}


def bodies(doc: dict[str, Any], op: dict[str, Any]) -> list[dict[str, Any]]:
    """Request keywords to try: no body, or the schema's required properties, then each optional
    property added alone (a model's own validator may want one of them: the schema cannot say)."""
    body = op.get("requestBody", {}).get("content", {}).get("application/json")
    if body is None:
        return [{}]
    schema = body["schema"]
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    least = example(schema, doc)
    optional = [k for k in schema.get("properties", {}) if k not in schema.get("required", [])]
    return [{"json": least}] + [{"json": {**least, k: example(schema["properties"][k], doc)}} for k in optional]


async def valid(calls: Recorder, who: str, method: str, url: str, doc: dict[str, Any], op: dict[str, Any]
                ) -> dict[str, Any]:
    """The first body of `bodies` that `who` gets past validation with (at `url`)."""
    candidates = bodies(doc, op)
    for kw in candidates:
        if (await calls.call(who, method, url, **kw)).status_code != 422:
            return kw
    return candidates[0]


@pytest.fixture
async def daemon(tmp_path: Path, pg_user: str, pg_schema: str, admin_b: str) -> AsyncIterator[Daemon]:
    async with serving(tmp_path, config(tmp_path, pg_user, pg_schema), only=("alpha_orders", "beta_orders")) as d:
        d.tokens["admin-b"] = admin_b
        yield d


async def test_every_operation_is_fenced_by_token_role_and_project(tmp_path: Path, daemon: Daemon) -> None:
    calls = Recorder(daemon)
    append(tmp_path / "a" / "1.jsonl", 0, 20)
    append(tmp_path / "b" / "1.jsonl", 0, 20)
    await until(lambda: _written(daemon, {"alpha_orders": 20, "beta_orders": 20}), "the first commits")
    started = await calls.call("operator-a", "POST", "/api/v1/pipelines/alpha_idle/runs")
    assert started.status_code == 202, started.text
    run = started.json()["id"]

    async def run_ended() -> bool:
        return (await daemon.get("viewer-a", f"/runs/{run}")).json()["state"] != "running"

    await until(run_ended, "the bounded run to end")

    public = await calls.call(None, "GET", "/api/v1/openapi.json")
    assert public.status_code == 200
    doc = public.json()
    ops = list(operations(doc))
    assert {("GET", "/api/v1/usage"), ("GET", "/api/v1/audit"), ("GET", "/api/v1/tokens")} <= {o[:2] for o in ops}
    fences = Fences()
    for method, path, op in ops:
        url, _ = request(doc, method, path, op, "alpha_orders", run)
        kw = bodies(doc, op)[0]
        anonymous = await calls.call(None, method, url, **kw)
        fences.expect(anonymous, 401, f"no token: {method} {url}")
        if method != "GET":
            fences.expect(await calls.call("viewer-a", method, url, **kw), 403, f"viewer: {method} {url}")
        if path == "/api/v1/events":
            continue  # a stream that does not end: only its refusals are walked
        if "{name}" in path or "{run_id}" in path:
            for name in A_NAMES if "{name}" in path else A_NAMES[:1]:
                url, _ = request(doc, method, path, op, name, run)
                nowhere = url.replace(name, NOWHERE).replace(run, NOWHERE)
                kw = await valid(calls, "admin-b", method, nowhere, doc, op)
                hidden = await calls.call("admin-b", method, url, **kw)
                missing = await calls.call("admin-b", method, nowhere, **kw)
                what = f"project b: {method} {url}"
                if fences.expect(hidden, 404, what) and hidden.json()["detail"].replace(name, NOWHERE).replace(
                        run, NOWHERE) != missing.json()["detail"]:
                    fences.failed.append(f"{what}: {hidden.json()['detail']!r} tells it from a missing one "
                                         f"({missing.json()['detail']!r})")
        elif method == "GET":
            listed = await calls.call("admin-b", method, url)
            if fences.expect(listed, 200, f"project b: {method} {url}") and (
                    "alpha" in listed.text or run in listed.text):
                fences.failed.append(f"project b: {method} {url} shows project a: {listed.text[:300]}")
        if any(p["name"] == "pipeline" and p["in"] == "query" for p in op.get("parameters", [])):
            for name in A_NAMES:
                filtered = await calls.call("admin-b", method, url, params={"pipeline": name})
                fences.expect(filtered, 404, f"project b: {method} {url}?pipeline={name}")
    assert fences.failed == [], "\n".join(fences.failed)
    assert (await calls.call("viewer-a", "GET", "/api/v1/tokens")).status_code == 403
    wrong_method = await calls.call("admin-all", "DELETE", "/api/v1/pipelines")
    assert wrong_method.status_code == 405 and wrong_method.headers["content-type"] == PROBLEM
    assert wrong_method.headers["allow"] == "GET"
    # Usage of the PostgreSQL destination is what its transactions committed.
    usage = await calls.call("viewer-a", "GET", "/api/v1/usage", params={"pipeline": "alpha_orders"})
    assert usage.json()["totals"]["all"]["rows"] == 20, usage.text
    assert (await calls.call("operator-b", "GET", "/api/v1/tokens")).status_code == 403

    # Every readable thing, as an admin of everything, holds no secret either.
    for method, path, op in ops:
        if method != "GET" or path == "/api/v1/events":
            continue
        for name in (*A_NAMES, "beta_orders"):
            url, kw = request(doc, method, path, op, name, run)
            answer = await calls.call("admin-all", method, url)
            assert answer.status_code < 500, (url, answer.text)
    config_text = (await calls.call("admin-all", "GET", "/api/v1/pipelines/alpha_kafka/config")).text
    assert "sasl.username" in config_text  # the walk reached the Kafka client properties
    assert calls.leaks() == []


async def test_the_audit_log_shows_each_caller_their_projects_newest_first(tmp_path: Path, daemon: Daemon) -> None:
    calls = Recorder(daemon)
    await until(lambda: _written(daemon, {"alpha_orders": 0, "beta_orders": 0}), "the pipelines to start")
    made: list[tuple[str, str, str]] = []  # (token, pipeline, action), in order
    for who, name in (("operator-a", "alpha_orders"), ("operator-b", "beta_orders"), ("admin-all", "alpha_orders")):
        for action in ("pause", "resume"):
            answer = await calls.call(who, "POST", f"/api/v1/pipelines/{name}/{action}")
            assert answer.status_code == 200 and answer.json()["audit"] == "recorded", answer.text
            made.append((who, name, action))

    async def entries(who: str, **params: Any) -> dict[str, Any]:
        answer = await calls.call(who, "GET", "/api/v1/audit", params=params)
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    # Newest first: each destination's own order kept, the two interleaved by time (as precise
    # as each destination keeps it: SQLite keeps seconds).
    every = await entries("admin-all", limit=500)
    assert sorted((e["actor"], e["pipeline"], e["action"]) for e in every["entries"]) == sorted(made)
    for destination, names in (("wh", {"alpha_orders"}), ("db", {"beta_orders"})):
        assert [(e["actor"], e["pipeline"], e["action"]) for e in every["entries"] if e["destination"] == destination] \
            == [m for m in made[::-1] if m[1] in names]
    times = [datetime.fromisoformat(e["at"]) for e in every["entries"]]
    assert times == sorted(times, reverse=True) and every["next_before_id"] is None
    assert [e["pipeline"] for e in (await entries("viewer-b"))["entries"]] == ["beta_orders"] * 2
    assert [(e["actor"], e["action"]) for e in (await entries("viewer-a", action="pause"))["entries"]] == [
        ("admin-all", "pause"), ("operator-a", "pause")]
    assert [e["actor"] for e in (await entries("admin-all", pipeline="beta_orders"))["entries"]] == ["operator-b"] * 2
    first = every["entries"][-1]
    assert first["before"]["state"] == "running" and first["after"]["state"] == "paused"

    paged: list[tuple[str, int]] = []
    cursor: str | None = None
    for _ in range(len(made) + 1):
        page = await entries("admin-all", limit=2, **({"before_id": cursor} if cursor else {}))
        paged += [(e["destination"], e["id"]) for e in page["entries"]]
        cursor = page["next_before_id"]
        if cursor is None:
            break
    assert paged == [(e["destination"], e["id"]) for e in every["entries"]]
    assert (await calls.call("admin-all", "GET", "/api/v1/audit", params={"before_id": "x;1"})).status_code == 422
    assert calls.leaks() == []


async def test_the_token_list_is_for_admins_and_shows_no_hash(daemon: Daemon) -> None:
    every = await daemon.get("admin-all", "/tokens")
    assert every.status_code == 200, every.text
    assert [t["name"] for t in every.json()["tokens"]] == sorted([*daemon.tokens])
    assert {"name": "viewer-a", "role": "viewer", "projects": ["a"]} in every.json()["tokens"]
    for token in daemon.tokens.values():
        assert hash_token(token) not in every.text and token not in every.text
    assert "sha256" not in every.text
    scoped = await daemon.get("admin-a", "/tokens")
    assert [t["name"] for t in scoped.json()["tokens"]] == ["admin-a", "operator-a", "viewer-a"]
    assert (await daemon.get("operator-a", "/tokens")).status_code == 403


async def _written(daemon: Daemon, expected: dict[str, int]) -> bool:
    for name, count in expected.items():
        body = await daemon.pipeline("admin-all", name)
        if body["state"] != "running" or int(body.get("rows_written", 0)) < count:
            return False
    return True
