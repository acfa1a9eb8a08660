"""`resources[].batch`: where a batch is cut, fixed or adaptive (`max_rows: auto`, steered by
`conduitd.runtime.tuning`)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from conduitd.configmodel import StrictModel
from conduitd.core.units import ByteSize, PositiveDuration


class BatchConfig(StrictModel):
    """A batch is cut at whichever limit is reached first. Under `max_rows: auto` the pipeline
    sizes its batches itself (`conduitd.runtime.tuning`): `adaptive` is true and `max_rows` reads
    back as `max_rows_limit`, the most rows any batch may hold."""

    max_rows: int = Field(50_000, gt=0)
    """Most rows in one batch; `auto`: steered after every commit toward `target_latency`,
    between `min_rows` and `max_rows_limit` (and what `max_bytes` holds)."""
    max_bytes: ByteSize = 64 * 1024 * 1024
    max_wait: PositiveDuration = 1.0
    target_latency: PositiveDuration = 2.0
    """The time one batch's write and commit should take: `max_rows: auto` steers toward it, and
    the tuning suggestions (/status, `conduitd tune`) measure fixed sizes against it."""
    initial_rows: int = Field(10_000, gt=0)
    """`max_rows: auto`: the size of the first batches."""
    min_rows: int = Field(100, gt=0)
    """`max_rows: auto`: the smallest size it shrinks to."""
    max_rows_limit: int = Field(1_000_000, gt=0)
    """`max_rows: auto`: the largest size it grows to."""
    _adaptive: bool = False

    @property
    def adaptive(self) -> bool:
        """Whether the config said `max_rows: auto`."""
        return self._adaptive

    @property
    def first_rows(self) -> int:
        """The size batches (and source chunks) start at: `max_rows`, or under auto `initial_rows`
        within `min_rows`..`max_rows_limit`."""
        if not self._adaptive:
            return self.max_rows
        return max(min(self.min_rows, self.max_rows_limit), min(self.initial_rows, self.max_rows_limit))

    @field_validator("max_rows", mode="before")
    @classmethod
    def _integer_or_auto(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
            raise ValueError(f"expected a positive integer or auto, got {value[:40]!r}")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _auto(cls, data: Any, handler: Any) -> BatchConfig:
        auto = isinstance(data, dict) and isinstance(data.get("max_rows"), str) and data["max_rows"].strip() == "auto"
        model: BatchConfig = handler({k: v for k, v in data.items() if k != "max_rows"} if auto else data)
        if not auto:
            fixed_only = sorted(model.model_fields_set & {"initial_rows", "min_rows", "max_rows_limit"})
            if fixed_only and not model.adaptive:
                raise ValueError(f"{', '.join(fixed_only)}: only with max_rows: auto (max_rows is a fixed size here)")
            return model
        given = [(name, getattr(model, name)) for name in ("min_rows", "initial_rows", "max_rows_limit")
                 if name in model.model_fields_set]
        for index in range(1, len(given)):
            (low_name, low), (high_name, high) = given[index - 1], given[index]
            if low > high:
                raise ValueError(f"{low_name} ({low}) is above {high_name} ({high})")
        model = model.model_copy(update={"max_rows": model.max_rows_limit})
        model._adaptive = True
        return model
