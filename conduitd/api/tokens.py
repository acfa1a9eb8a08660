"""API tokens: who is calling, with which role, over which projects.

Tokens are random strings (`conduitd token create` makes one); only their SHA-256 is stored, in
`service.api.tokens_file` and/or $CONDUITD_API_TOKENS (YAML or JSON of the same shape):

    tokens:
      - {name: ci-bot, sha256: 3f2a..., role: operator, projects: [analytics]}

Roles grow: a `viewer` reads; an `operator` also pauses, resumes, restarts, starts runs and
replays the DLQ; an `admin` also resets checkpoints, discards DLQ entries and applies or rejects
schema changes. `projects: ["*"]` reaches every project.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError

from conduitd.apisettings import TOKENS_ENV, ApiConfig
from conduitd.configmodel import NonEmpty, StrictModel
from conduitd.errors import ConfigError

Role = Literal["viewer", "operator", "admin"]
RANKS: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}
PREFIX = "cdt_"


class TokenEntry(StrictModel):
    name: NonEmpty
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: Role
    projects: tuple[NonEmpty, ...] = Field(min_length=1)


class TokenFile(StrictModel):
    tokens: tuple[TokenEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller a valid token stands for."""

    name: str
    role: str
    projects: frozenset[str]

    def can(self, role: str) -> bool:
        return RANKS[self.role] >= RANKS[role]

    def sees(self, project: str) -> bool:
        return "*" in self.projects or project in self.projects

    @property
    def all_projects(self) -> bool:
        return "*" in self.projects


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


class Tokens:
    """The known tokens, by hash."""

    def __init__(self, entries: tuple[TokenEntry, ...]) -> None:
        names = [e.name for e in entries]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"service.api tokens: the name {repeated[0]!r} is given to more than one token")
        self.entries = entries
        self._by_hash = {e.sha256: e for e in entries}

    @classmethod
    def load(cls, config: ApiConfig, environ: Mapping[str, str] | None = None) -> Tokens:
        environ = os.environ if environ is None else environ
        entries: list[TokenEntry] = []
        if config.tokens_file is not None:
            path = Path(config.tokens_file)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"service.api.tokens_file: cannot read {path}: {exc.strerror or exc}") from None
            entries += _parse(text, f"{path}")
        if environ.get(TOKENS_ENV):
            entries += _parse(environ[TOKENS_ENV], f"${TOKENS_ENV}")
        return cls(tuple(entries))

    def authenticate(self, token: str | None) -> Principal | None:
        if not token:
            return None
        entry = self._by_hash.get(hash_token(token))  # a lookup by digest: the token's bytes are never compared
        if entry is None:
            return None
        return Principal(entry.name, entry.role, frozenset(entry.projects))


def _parse(text: str, where: str) -> list[TokenEntry]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{where}{line}: not valid YAML or JSON") from None
    if data is None:
        return []
    try:
        return list(TokenFile.model_validate(data).tokens)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise ConfigError(f"{where}: {key}: {first['msg']} (each token needs name, sha256, role "
                          "viewer|operator|admin, projects)") from None
