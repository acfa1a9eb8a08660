"""The `type: file` destination's section: where the parts go, in which format, and how S3 is
reached. Parsed once at the edge; credentials are `SecretText` (never shown)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from conduitd.config import DestinationConfig, NonEmpty
from conduitd.credentials import SecretText

Format = Literal["csv", "json", "jsonl", "parquet"]
SUFFIXES: dict[str, Format] = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
                               ".parquet": "parquet"}
"""File name suffixes that make `path` a single output file, and the format each one means."""
EXTENSIONS: dict[Format, str] = {"csv": ".csv", "json": ".json", "jsonl": ".jsonl", "parquet": ".parquet"}


class FileDestinationConfig(DestinationConfig):
    """CSV, JSON (an array per part), JSON lines or Parquet files, in a local directory or under
    an S3 prefix, written effectively-once (see `conduitd.destinations.files`)."""

    type: Literal["file"]
    path: NonEmpty
    """A directory (each table's parts in `<path>/<table>/`), `s3://bucket/prefix`, or one file
    such as `out.csv` (the seed tool's single-file output: rewritten whole after each commit)."""
    format: Format | None = None
    """csv, json (a JSON array per file), jsonl or parquet; default: the single file's suffix,
    else jsonl."""
    indent: int | None = Field(None, ge=0, le=16)
    """format json: spaces of indentation (none: one line per part)."""
    compression: Literal["snappy", "gzip", "zstd", "brotli", "lz4", "none"] = "snappy"
    """format parquet: the codec of the column chunks."""
    endpoint_url: NonEmpty | None = None
    """S3: a server other than AWS (http://127.0.0.1:9000 for MinIO or moto)."""
    region: NonEmpty | None = None
    """S3: the bucket's region (default: the AWS chain's, else us-east-1)."""
    access_key_id: SecretText | None = None
    """S3: with `secret_access_key`; without both, the AWS chain (environment, profile, role)."""
    secret_access_key: SecretText | None = None
    session_token: SecretText | None = None

    @model_validator(mode="after")
    def _consistent(self) -> FileDestinationConfig:
        if self.indent is not None and self.output_format != "json":
            raise ValueError("`indent` applies to format json only")
        if "compression" in self.model_fields_set and self.output_format != "parquet":
            raise ValueError("`compression` applies to format parquet only")
        single = self.single_file_format
        if single is not None and self.format is not None and self.format != single:
            raise ValueError(f"`path` names a {single} file but `format` is {self.format}")
        s3_keys = [k for k in ("endpoint_url", "region", "access_key_id", "secret_access_key", "session_token")
                   if getattr(self, k) is not None]
        if s3_keys and not self.on_s3:
            raise ValueError(f"{', '.join(f'`{k}`' for k in s3_keys)}: S3 settings need an s3:// `path`")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("`access_key_id` and `secret_access_key` go together (or neither: the AWS chain)")
        if self.on_s3 and not self.path[len("s3://"):].split("/", 1)[0]:
            raise ValueError("an s3:// `path` names a bucket: s3://bucket/prefix")
        return self

    @property
    def on_s3(self) -> bool:
        return self.path.startswith("s3://")

    @property
    def single_file_format(self) -> Format | None:
        """The format a single-file `path` names by its suffix; None for a directory or prefix."""
        name = self.path.rstrip("/").rsplit("/", 1)[-1]
        if self.path.endswith("/") or "." not in name:
            return None
        return SUFFIXES.get("." + name.rsplit(".", 1)[-1].lower())

    @property
    def output_format(self) -> Format:
        return self.format or self.single_file_format or "jsonl"
