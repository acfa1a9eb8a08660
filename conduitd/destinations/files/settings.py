"""The `type: file` destination's section: where the parts go, in which format, and how S3 is
reached. Parsed once at the edge; credentials are `SecretText` (never shown)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from conduitd.config import DestinationConfig, NonEmpty
from conduitd.s3settings import S3Settings, is_s3, settings_problem

Format = Literal["csv", "json", "jsonl", "parquet"]
SUFFIXES: dict[str, Format] = {".csv": "csv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl",
                               ".parquet": "parquet"}
"""File name suffixes that make `path` a single output file, and the format each one means."""
EXTENSIONS: dict[Format, str] = {"csv": ".csv", "json": ".json", "jsonl": ".jsonl", "parquet": ".parquet"}


class FileDestinationConfig(DestinationConfig, S3Settings):
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
    # endpoint_url, region, access_key_id, secret_access_key, session_token: `S3Settings`.

    @model_validator(mode="after")
    def _consistent(self) -> FileDestinationConfig:
        if self.indent is not None and self.output_format != "json":
            raise ValueError("`indent` applies to format json only")
        if "compression" in self.model_fields_set and self.output_format != "parquet":
            raise ValueError("`compression` applies to format parquet only")
        single = self.single_file_format
        if single is not None and self.format is not None and self.format != single:
            raise ValueError(f"`path` names a {single} file but `format` is {self.format}")
        problem = settings_problem(self, self.path)
        if problem is not None:
            raise ValueError(problem)
        return self

    @property
    def on_s3(self) -> bool:
        return is_s3(self.path)

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
