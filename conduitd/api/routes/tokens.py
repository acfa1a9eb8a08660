"""The known API tokens (admin only): name, role and projects; never the hash."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from conduitd.api.deps import AccessDep, Admin

router = APIRouter(tags=["tokens"])


@router.get("/tokens", summary="The tokens the daemon knows (admin): name, role, projects; never the hash")
async def list_tokens(who: Admin, access: AccessDep) -> dict[str, Any]:
    """An admin of every project (`*`) sees every token; an admin of some projects sees the
    tokens that reach only projects of theirs (not the names of other teams' tokens, nor of
    tokens that reach every project)."""
    entries = [e for e in access.tokens.entries
               if who.all_projects or ("*" not in e.projects and all(who.sees(p) for p in e.projects))]
    return {"tokens": [{"name": e.name, "role": e.role, "projects": list(e.projects)}
                       for e in sorted(entries, key=lambda e: e.name)]}
