"""The Kinesis calls the source makes, on one aiobotocore client, and what their errors mean.

Retries are the source's own (botocore's are off): a throttle slows the shard that met it, an
expired iterator is re-created from the position, a lost connection is retried with backoff and
shown in `problem`; a missing stream or refused credentials stop the pipeline with a clear error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from conduitd.errors import ConduitError, ConfigError, DependencyUnreachable, TransientError
from conduitd.sources.kinesis.settings import KinesisSourceConfig

THROTTLES = frozenset({"ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException",
                       "RequestLimitExceeded"})
EXPIRED = frozenset({"ExpiredIteratorException", "InvalidArgumentException"})
"""An iterator that cannot be used any more: made again from the position (kinesis-local says
InternalFailure for a bad one; that is retried the same way)."""
_REFUSED = frozenset({"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException",
                      "ExpiredTokenException", "KMSAccessDeniedException", "KMSDisabledException",
                      "KMSNotFoundException", "KMSInvalidStateException"})


class Throttled(TransientError):
    """The shard (or the account's control plane) asked for fewer calls."""


class IteratorExpired(TransientError):
    """The shard iterator cannot be used: make a new one from the position."""


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(exc: BaseException, where: str) -> ConduitError:
    """A botocore/aiohttp error as the source's own; the message names the call, never a secret."""
    if isinstance(exc, ConduitError):
        return exc
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = str(exc.response.get("Error", {}).get("Message", ""))[:300]
        if code in THROTTLES:
            return Throttled(f"{where}: throttled ({code})")
        if code in EXPIRED or code in ("InternalFailure", "InternalFailureException", "InternalServerError"):
            return IteratorExpired(f"{where}: {code}: {message}")
        if code == "ResourceNotFoundException":
            return ConfigError(f"{where}: not found: {message}")
        if code in _REFUSED:
            return ConfigError(f"{where}: refused ({code}): check the credentials and the IAM policy: {message}")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if status >= 500:
            return DependencyUnreachable(f"{where}: {code or status}: {message}")
        return ConfigError(f"{where}: {code}: {message}")
    if isinstance(exc, NoCredentialsError):
        return ConfigError(f"{where}: no AWS credentials found (set aws_access_key_id/aws_secret_access_key "
                           "or configure the standard AWS chain)")
    if isinstance(exc, NoRegionError):
        return ConfigError(f"{where}: no AWS region: set 'region' (or AWS_REGION)")
    if isinstance(exc, BotoCoreError | OSError | TimeoutError):
        return DependencyUnreachable(f"{where}: {type(exc).__name__}: {exc}")
    name = type(exc).__module__.split(".")[0]
    if name == "aiohttp":
        return DependencyUnreachable(f"{where}: {type(exc).__name__}: {exc}")
    raise exc


class KinesisApi:
    """One client for one source; `open` again after `close` makes a new one."""

    def __init__(self, config: KinesisSourceConfig) -> None:
        self.config = config
        self._context: Any = None
        self.client: Any = None

    @property
    def where(self) -> str:
        return f"Kinesis at {self.config.endpoint_url or self.config.region or 'the default region'}"

    async def open(self) -> None:
        if self.client is not None:
            return
        c = self.config
        secret = c.aws_secret_access_key
        options: dict[str, Any] = {
            "region_name": c.region, "endpoint_url": c.endpoint_url,
            "config": AioConfig(retries={"total_max_attempts": 1}, connect_timeout=c.connect_timeout,
                                read_timeout=max(30.0, c.connect_timeout), max_pool_connections=64)}
        if c.aws_access_key_id is not None and secret is not None:
            options["aws_access_key_id"] = c.aws_access_key_id.get_secret_value()
            options["aws_secret_access_key"] = secret.get_secret_value()
            if c.aws_session_token is not None:
                options["aws_session_token"] = c.aws_session_token.get_secret_value()
        try:
            session = get_session()
            # botocore parses every record's arrival time with dateutil (3/4 of its parsing of a
            # GetRecords answer); Kinesis sends epoch seconds: read them directly.
            session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=_epoch_or_text)
            self._context = session.create_client("kinesis", **options)
            self.client = await self._context.__aenter__()
        except Exception as exc:  # noqa: BLE001 - every failure is translated or re-raised
            self._context = self.client = None
            raise translate(exc, self.where) from None

    async def close(self) -> None:
        context, self._context, self.client = self._context, None, None
        if context is not None:
            with contextlib.suppress(Exception):  # a client that cannot close cleanly is dropped all the same
                await context.__aexit__(None, None, None)

    async def _call(self, operation: str, where: str, **kwargs: Any) -> dict[str, Any]:
        await self.open()
        try:
            answer: dict[str, Any] = await getattr(self.client, operation)(**kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure is translated or re-raised
            raise translate(exc, where) from None
        return answer

    async def list_shards(self, stream: str) -> list[dict[str, Any]]:
        """Every shard the stream still has (open and closed within the retention period)."""
        shards: list[dict[str, Any]] = []
        answer = await self._call("list_shards", f"stream {stream!r}: ListShards", StreamName=stream)
        while True:
            shards += answer.get("Shards", [])
            token = answer.get("NextToken")
            if not token:
                return shards
            answer = await self._call("list_shards", f"stream {stream!r}: ListShards", NextToken=token)

    async def iterator(self, stream: str, shard_id: str, kind: str, *, sequence: str | None = None,
                       timestamp: datetime | None = None) -> str:
        options: dict[str, Any] = {"StreamName": stream, "ShardId": shard_id, "ShardIteratorType": kind}
        if sequence is not None:
            options["StartingSequenceNumber"] = sequence
        if timestamp is not None:
            options["Timestamp"] = timestamp
        answer = await self._call("get_shard_iterator", f"shard {stream}:{shard_id}: GetShardIterator", **options)
        return str(answer["ShardIterator"])

    async def get_records(self, stream: str, shard_id: str, iterator: str, limit: int) -> dict[str, Any]:
        return await self._call("get_records", f"shard {stream}:{shard_id}: GetRecords", ShardIterator=iterator,
                                Limit=limit)


def _epoch_or_text(value: Any) -> datetime:
    """A timestamp of a Kinesis answer: epoch seconds (what Kinesis sends), else ISO 8601 text."""
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError):
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def parent_ids(shard: Mapping[str, Any]) -> Sequence[str]:
    return tuple(p for p in (shard.get("ParentShardId"), shard.get("AdjacentParentShardId")) if p)
