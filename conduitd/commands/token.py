"""`conduitd token create`: a new API token, printed once, and the entry (with only its hash)
to add to `service.api.tokens_file` or $CONDUITD_API_TOKENS."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import yaml

from conduitd.api.tokens import TokenEntry, hash_token, new_token
from conduitd.errors import ConfigError


def create_token(name: str, role: str, projects: Sequence[str]) -> int:
    if not projects:
        raise ConfigError("token create needs at least one --project (or --project '*' for every project)")
    token = new_token()
    entry = TokenEntry(name=name, sha256=hash_token(token), role=role,
                       projects=tuple(projects))
    print(f"token (shown once; give it to {name}, keep it secret):\n  {token}\n", file=sys.stderr)
    print("# add this entry under `tokens:` in service.api.tokens_file:", file=sys.stderr)
    sys.stdout.write(yaml.safe_dump([entry.model_dump()], sort_keys=False))
    return 0
