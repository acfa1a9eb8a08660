"""S3 as the file source and the file destination reach it: the settings both sections take, and
the pyarrow filesystem made from them.

Credentials are `SecretText` (never shown); without `access_key_id` and `secret_access_key` the
AWS chain (environment, profile, role) is used. pyarrow's S3 filesystem ignores
`AWS_ENDPOINT_URL`, so a server other than AWS (MinIO, moto) is named by `endpoint_url`.
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import StringConstraints

from conduitd.configmodel import StrictModel
from conduitd.credentials import SecretText
from conduitd.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow.fs as pafs

SCHEME = "s3://"
SETTINGS = ("endpoint_url", "region", "access_key_id", "secret_access_key", "session_token")
"""The keys of `S3Settings`, in the order errors list them."""


class S3Settings(StrictModel):
    """How S3 is reached: the keys a section with an s3:// `path` may add."""

    endpoint_url: Annotated[str, StringConstraints(min_length=1)] | None = None
    """S3: a server other than AWS (http://127.0.0.1:9000 for MinIO or moto)."""
    region: Annotated[str, StringConstraints(min_length=1)] | None = None
    """S3: the bucket's region (default: the AWS chain's, else us-east-1)."""
    access_key_id: SecretText | None = None
    """S3: with `secret_access_key`; without both, the AWS chain (environment, profile, role)."""
    secret_access_key: SecretText | None = None
    session_token: SecretText | None = None


def is_s3(path: str) -> bool:
    return path.startswith(SCHEME)


def settings_problem(settings: S3Settings, path: str) -> str | None:
    """Why the S3 settings do not fit `path` (a model validator raises it as a ValueError)."""
    given = [k for k in SETTINGS if getattr(settings, k) is not None]
    if given and not is_s3(path):
        return f"{', '.join(f'`{k}`' for k in given)}: S3 settings need an s3:// `path`"
    if (settings.access_key_id is None) != (settings.secret_access_key is None):
        return "`access_key_id` and `secret_access_key` go together (or neither: the AWS chain)"
    if is_s3(path) and not path[len(SCHEME):].split("/", 1)[0]:
        return "an s3:// `path` names a bucket: s3://bucket/prefix"
    return None


def s3_filesystem(settings: S3Settings, who: str) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem with these settings; `who` names the section in errors
    ("file destination 'out'"). Raises ConfigError (the error never shows a credential)."""
    import pyarrow as pa  # imported when S3 is used, not when a config is loaded
    import pyarrow.fs as pafs
    options: dict[str, Any] = {}
    if settings.endpoint_url is not None:
        url = urllib.parse.urlsplit(settings.endpoint_url)
        if url.scheme not in ("http", "https") or not url.netloc:
            raise ConfigError(f"{who}: `endpoint_url` must be http(s)://host[:port]")
        options.update(endpoint_override=url.netloc, scheme=url.scheme)
    if settings.region is not None:
        options["region"] = settings.region
    if settings.access_key_id is not None and settings.secret_access_key is not None:
        options.update(access_key=settings.access_key_id.get_secret_value(),
                       secret_key=settings.secret_access_key.get_secret_value())
        if settings.session_token is not None:
            options["session_token"] = settings.session_token.get_secret_value()
    try:
        return pafs.S3FileSystem(**options)
    except (OSError, pa.ArrowException) as exc:
        raise ConfigError(f"{who}: cannot set up S3 ({type(exc).__name__})") from None
