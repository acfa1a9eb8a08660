"""The file destination (`type: file`) against the destination contract, locally and on a local
S3 server (moto), and its formats read back with pyarrow equal to what was written."""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pytest

from conduitd.config import PipelineConfig
from conduitd.destinations.base import Destination
from conduitd.destinations.files import FileDestination, FileDestinationConfig
from conduitd.runtime.commit import commit_batch
from conduitd.testing import scenario
from conduitd.testing.contract import DestinationContract, Refusal, SecretCase
from tests.helpers.s3 import BUCKET, s3_endpoint
from tests.helpers.s3 import free_port as _free_port

__all__ = ["s3_endpoint"]  # the fixture, used by name


class _FileContract(DestinationContract):
    fmt = "parquet"
    destination: FileDestination | None = None

    def config(self) -> dict[str, Any]:
        raise NotImplementedError

    def make_destination(self) -> Destination:
        self.destination = FileDestination(FileDestinationConfig(name="d", type="file", format=self.fmt,
                                                                 **self.config()))
        return self.destination

    async def read_rows(self, table: str) -> list[dict[str, Any]]:
        reading = self.make_destination_for_reading()
        await reading.open(read_only=True)
        try:
            found = await reading.read_table(table)
        finally:
            await reading.close()
        return [] if found is None else found.to_pylist()

    def make_destination_for_reading(self) -> FileDestination:
        return FileDestination(FileDestinationConfig(name="d", type="file", format=self.fmt, **self.config()))

    async def schema_history(self, pipeline: str) -> list[tuple[str, str | None]] | None:
        reading = self.make_destination_for_reading()
        await reading.open(read_only=True)
        try:
            return reading.history(pipeline)
        finally:
            await reading.close()

    async def refusal(self, destination: Destination) -> Refusal | None:
        return None  # files refuse no value


class TestLocalParquet(_FileContract):
    def config(self) -> dict[str, Any]:
        return {"path": str(self.tmp_path / "out")}


class TestLocalCsv(TestLocalParquet):
    fmt = "csv"


class TestS3Jsonl(_FileContract):
    fmt = "jsonl"

    @pytest.fixture(autouse=True)
    def _endpoint(self, s3_endpoint: str) -> None:
        self.endpoint = s3_endpoint

    def config(self) -> dict[str, Any]:
        return {"path": f"s3://{BUCKET}/{self.tmp_path.name}", "endpoint_url": self.endpoint,
                "region": "us-east-1", "access_key_id": "AKIDLOCAL", "secret_access_key": "no-real-key"}

    def secret_cases(self) -> Sequence[SecretCase]:
        secret = "s3cr3t-Val\u00fce/+=key"

        def make() -> Destination:
            return FileDestination(FileDestinationConfig(
                name="d", type="file", path=f"s3://{BUCKET}/x", endpoint_url=f"http://127.0.0.1:{_free_port()}",
                region="us-east-1", access_key_id="AKIAEXAMPLE", secret_access_key=secret))
        return [SecretCase(make, secret)]


ROWS = pa.table({
    "id": pa.array([1, 2, 3], pa.int64()),
    "zip": ["00501", None, ""],
    "score": [1.5, None, -0.25],
    "ts": pa.array([dt.datetime(2026, 1, 1, 1, 2, 3, 4567, tzinfo=dt.UTC), None,
                    dt.datetime(2026, 6, 30, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC")),
    "ok": [True, False, None],
    "amount": pa.array([decimal.Decimal("1.25"), None, decimal.Decimal("-3.10")], pa.decimal128(12, 2)),
})


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "parquet"])
@pytest.mark.parametrize("where", ["local", "s3"])  # moto >= 5.2.5: 5.2.1 failed pyarrow's multipart upload
def test_contents_read_back_equal_to_the_input(fmt: str, where: str, tmp_path: Any,
                                               request: pytest.FixtureRequest) -> None:
    import asyncio

    import pyarrow.csv as pacsv
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from conduitd.destinations.files import formats

    if where == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        settings: dict[str, Any] = {"path": f"s3://{BUCKET}/roundtrip-{fmt}-{tmp_path.name}", "endpoint_url": endpoint,
                                    "region": "us-east-1", "access_key_id": "AKIDLOCAL",
                                    "secret_access_key": "no-real-key"}
    else:
        settings = {"path": str(tmp_path / "out")}
    config = FileDestinationConfig(name="d", type="file", format=fmt, **settings)
    pipeline = PipelineConfig(name="rt", source="s", destination="d", table="rt")
    half = [ROWS.slice(0, 2).to_pylist(), ROWS.slice(2).to_pylist()]

    async def load() -> tuple[pa.Table | None, list[str]]:
        destination = FileDestination(config)
        await destination.open()
        try:
            await commit_batch(destination, pipeline, scenario.batch(scenario.chunk("p0", None, {"o": 2}, half[0])))
            await commit_batch(destination, pipeline,
                               scenario.batch(scenario.chunk("p0", {"o": 2}, {"o": 3}, half[1])))
            return await destination.read_table("rt"), [p.name for p in destination.state.tables["rt"].parts]
        finally:
            await destination.close()

    through_state, parts = asyncio.run(load())
    assert through_state is not None and through_state.to_pylist() == ROWS.to_pylist()
    assert len(parts) == 2
    # Read the files themselves with pyarrow, as a user would, with the table's column types.
    if where == "s3":
        fs: pafs.FileSystem = pafs.S3FileSystem(endpoint_override=settings["endpoint_url"].split("//")[1],
                                                scheme="http", region="us-east-1", access_key="test",
                                                secret_key="test")
        root = settings["path"][len("s3://"):]
    else:
        fs, root = pafs.LocalFileSystem(), settings["path"]
    columns = FileDestination(config).dialect
    types = {f.name: columns.column_for(f.name, f.type) for f in ROWS.schema}
    pieces = []
    for name in parts:
        with fs.open_input_file(f"{root}/{name}") as stream:
            if fmt == "parquet":
                pieces.append(pq.read_table(stream))
            elif fmt == "csv":
                options = pacsv.ConvertOptions(column_types={n: pa.string() if n == "amount" else c.arrow
                                                             for n, c in types.items()},
                                               strings_can_be_null=True, quoted_strings_can_be_null=False)
                read = pacsv.read_csv(stream, convert_options=options)
                pieces.append(read.set_column(5, "amount", read.column("amount").cast(pa.decimal128(12, 2))))
            else:
                pieces.append(formats.read(stream, fmt, types))  # pyarrow has no JSON writer/array reader
    assert pa.concat_tables(pieces).to_pylist() == ROWS.to_pylist()
