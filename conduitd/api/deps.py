"""Request dependencies: the caller's token, their role, and mutations made once per
Idempotency-Key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from conduitd.api.access import Access
from conduitd.api.problems import Problem
from conduitd.api.tokens import Principal
from conduitd.config import PipelineConfig

_bearer = HTTPBearer(auto_error=False, description="A token made by `conduitd token create`.")


def access(request: Request) -> Access:
    found: Access = request.app.state.access
    return found


def caller(request: Request,
           credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(401, "a bearer token is required (Authorization: Bearer <token>)")
    who = access(request).tokens.authenticate(credentials.credentials)
    if who is None:
        raise Problem(401, "the token is not valid")
    return who


def role(needed: str) -> Callable[[Principal], Principal]:
    def check(who: Annotated[Principal, Depends(caller)]) -> Principal:
        if not who.can(needed):
            raise Problem(403, f"this needs the {needed} role; token {who.name!r} is {who.role}")
        return who

    return check


Viewer = Annotated[Principal, Depends(role("viewer"))]
Operator = Annotated[Principal, Depends(role("operator"))]
Admin = Annotated[Principal, Depends(role("admin"))]
AccessDep = Annotated[Access, Depends(access)]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200,
                                              description="Repeating a mutation with the same key returns the "
                                                          "first answer and does not act again.")]


async def once(request: Request, who: Principal, key: str | None, body: Any,
               act: Callable[[], Awaitable[tuple[int, Any]]], resource: PipelineConfig | None = None
               ) -> JSONResponse:
    """Run the mutation `act` unless this caller already made it under `key` (then its first
    answer again, marked with the header `Idempotent-Replay: true`). The daemon keeps answers
    in memory; after a restart, a repeat on `resource` is found in its audit log instead, and
    answered with what the audit row holds (`replayed`, `action`, `at`, `after`)."""
    found = access(request)
    fingerprint = hashlib.sha256(_json([request.method, request.url.path, body]).encode()).hexdigest()
    known = found.remembered(who, key, fingerprint)
    if known is not None:
        return JSONResponse(known.body, status_code=known.status, headers={"Idempotent-Replay": "true"})
    if key is not None and resource is not None:
        earlier = await found.recorded(who, resource, key)
        if earlier is not None:
            return JSONResponse({"replayed": True, "action": earlier.action, "pipeline": earlier.pipeline,
                                 "at": earlier.at.isoformat() if earlier.at else None,
                                 "after": json.loads(json.dumps(earlier.after, default=str))},
                                headers={"Idempotent-Replay": "true"})
    status, answer = await act()
    answer = json.loads(json.dumps(answer, default=str))  # as it will be sent; past-64-bit integers too
    found.remember(who, key, fingerprint, status, answer)
    return JSONResponse(answer, status_code=status)


def _json(value: Any) -> str:
    """Canonical JSON of a request for its fingerprint; the standard library's, as orjson refuses
    integers past 64 bits (which a request may hold)."""
    return json.dumps(value, default=str, sort_keys=True, separators=(",", ":"))
