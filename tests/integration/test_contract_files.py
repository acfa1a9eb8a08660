"""The connector contract kit (`conduitd.testing.contract`) run against the file source: JSON lines
spread over two files (two partitions) of one directory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from conduitd.config import FileSourceConfig
from conduitd.sources.base import Source
from conduitd.sources.files import FileSource
from conduitd.testing.contract import SourceContract


class TestFileSourceContract(SourceContract):
    written = 0

    def make_source(self, *, once: bool, max_rows: int) -> Source:
        config = FileSourceConfig(name="s", type="file", path=str(self.tmp_path / "in"))
        (self.tmp_path / "in").mkdir(exist_ok=True)
        return FileSource(config, once=once, max_rows=max_rows)

    def _append(self, name: str, line: bytes) -> None:
        (self.tmp_path / "in").mkdir(exist_ok=True)
        with (self.tmp_path / "in" / name).open("ab") as handle:
            handle.write(line + b"\n")

    async def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        for record in records:
            self._append(f"part-{self.written % 2}.jsonl", orjson.dumps(record))
            self.written += 1

    async def write_malformed(self) -> bool:
        self._append("part-0.jsonl", b'{"id": 1, "name": ')
        return True
