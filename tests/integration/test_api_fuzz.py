"""The API fuzzed from its own OpenAPI document with schemathesis, over HTTP against a running
daemon: every operation (but the never-ending `/events` stream), with an admin token of every
project (half of the cases aimed at real pipelines) and without a token. No answer is a 5xx,
none holds a traceback, and every error is a problem document.

Deterministic (derandomized Hypothesis, no shrinking) and bounded: EXAMPLES cases per operation
with the token, ANONYMOUS without."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis.core import NotSet

from tests.helpers.api import Daemon, serving, until

EXAMPLES = 20
ANONYMOUS = 3
SKIPPED = {"/api/v1/events"}  # a server-sent event stream: it does not end
PIPELINES = ("p_a", "p_b", "p_f")
PROBLEM = "application/problem+json"


def config(tmp_path: Path) -> dict[str, Any]:
    for name in ("a", "b"):
        (tmp_path / name).mkdir(exist_ok=True)
    fast = {"max_wait": 0.05}
    return {
        "sources": [{"name": f"src_{n}", "type": "file", "path": str(tmp_path / n), "format": "jsonl",
                     "poll_interval": 0.05} for n in ("a", "b")],
        "destinations": [{"name": "db", "type": "sqlite", "path": str(tmp_path / "t.db")},
                         {"name": "out", "type": "file", "path": str(tmp_path / "out"), "format": "jsonl"}],
        "resources": [
            {"name": "p_a", "source": "src_a", "destination": "db", "project": "a", "batch": fast,
             "quality_checks": [{"column": "name", "check": "regex", "pattern": "^n[0-9]$", "action": "dlq"}]},
            {"name": "p_b", "source": "src_b", "destination": "db", "project": "b", "batch": fast},
            {"name": "p_f", "source": "src_b", "destination": "out", "project": "b", "batch": fast}]}


def problems_of(response: schemathesis.Response) -> list[str]:
    """What is wrong with one answer."""
    found = []
    content_type = response.headers.get("content-type") or [""]
    if response.status_code >= 500:
        found.append(f"{response.status_code}")
    if "Traceback" in response.text or 'File "' in response.text:
        found.append("a traceback in the body")
    if response.status_code >= 400 and content_type[0] != PROBLEM:
        found.append(f"error as {content_type[0]!r}, not {PROBLEM}")
    return found


def fuzz(doc: dict[str, Any], base: str, token: str) -> tuple[list[str], int]:
    """Run the cases (in a thread of its own: the daemon serves in the test's event loop); the
    findings, one per operation and kind of problem, and how many requests were sent."""
    schema = schemathesis.openapi.from_dict(doc)
    findings: dict[str, str] = {}
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path in SKIPPED:
            continue
        for headers, examples in (({"Authorization": f"Bearer {token}"}, EXAMPLES), ({}, ANONYMOUS)):
            calls += run(operation, base, headers, examples, findings)
    return list(findings.values()), calls


def run(operation: Any, base: str, headers: dict[str, str], examples: int, findings: dict[str, str]) -> int:
    sent = 0
    aims = st.sampled_from((None, *PIPELINES)) if "{name}" in operation.path else st.none()

    @hypothesis.settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                         phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck),
                         print_blob=False)
    @hypothesis.given(case=operation.as_strategy(), aim=aims)
    def check(case: schemathesis.Case, aim: str | None) -> None:
        nonlocal sent
        if aim is not None:
            case.path_parameters = {**(case.path_parameters or {}), "name": aim}
        try:
            response = case.call(base_url=base, headers=headers, timeout=30)
        except (requests.exceptions.InvalidHeader, requests.exceptions.InvalidURL, ValueError):
            return  # a value HTTP cannot carry: the client refuses it before sending
        sent += 1
        for problem in problems_of(response):
            key = f"{case.method} {operation.path}: {problem}"
            findings.setdefault(key, f"{key}\n  request: {case.method} {response.request.url} "
                                     f"body={_body(case)} token={'yes' if headers else 'no'}\n"
                                     f"  response: {response.status_code} {response.text[:400]}")

    check()
    return sent


def _body(case: schemathesis.Case) -> str:
    if isinstance(case.body, NotSet):
        return "(none)"
    try:
        return json.dumps(case.body)[:300]
    except TypeError:
        return repr(case.body)[:300]


def append(path: Path, first: int, count: int) -> None:
    with path.open("a") as f:
        for i in range(first, first + count):
            f.write(json.dumps({"id": i, "name": f"n{i}"}) + "\n")


async def test_fuzzing_the_api_from_its_openapi_document_finds_no_5xx_and_no_traceback(tmp_path: Path) -> None:
    async with serving(tmp_path, config(tmp_path)) as daemon:
        append(tmp_path / "a" / "1.jsonl", 0, 40)  # ids 10.. go to p_a's DLQ
        append(tmp_path / "b" / "1.jsonl", 0, 40)
        await until(lambda: _committed(daemon), "the first commits")
        answer = await daemon.get("admin-all", "/openapi.json")
        assert answer.status_code == 200
        doc = answer.json()
        findings, calls = await asyncio.to_thread(fuzz, doc, daemon.base, daemon.tokens["admin-all"])
    operations = sum(1 for p, ms in doc["paths"].items() for _ in ms if p not in SKIPPED)
    assert calls >= operations * ANONYMOUS  # the cases reached the daemon
    assert findings == [], "\n".join(findings)


async def _committed(daemon: Daemon) -> bool:
    body = await daemon.pipeline("admin-all", "p_a")
    return int(body.get("dlq_rows", 0)) == 30 and int(body.get("rows_written", 0)) == 10
