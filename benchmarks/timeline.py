"""Every batch's stage spans in a conduitd run (`--timeline`): when its records were polled,
decoded, checked and cast (`quality`), written and committed, in milliseconds from the first
stage of the run. Idle gaps between one batch's commit and the next one's write, or a poll that
spans hundreds of milliseconds, show which stage the others wait on.

The spans are the ones the pipeline keeps per batch (`conduitd.core.timings`) and hands to its
batch sizer after each commit; this records them there (the sizer's `observe` wrapped while the
`with` block runs), so the run itself is unchanged.

    with BatchTimeline() as timeline:
        ...  # run conduitd in this process
    timeline.print()
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from conduitd.runtime.tuning import BatchSizer

STAGES = ("poll", "decode", "quality", "schema", "write", "commit")


class BatchTimeline:
    def __init__(self) -> None:
        self.batches: list[tuple[int, dict[str, tuple[int, int]]]] = []
        self._observe: Callable[..., Any] | None = None

    def __enter__(self) -> BatchTimeline:
        observe = self._observe = BatchSizer.observe
        batches = self.batches

        def recording(sizer: BatchSizer, records: int, nbytes: int, seconds: float, timings: Any) -> None:
            batches.append((records, dict(timings.spans)))
            observe(sizer, records, nbytes, seconds, timings)

        BatchSizer.observe = recording  # type: ignore[method-assign]
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._observe is not None:
            BatchSizer.observe = self._observe  # type: ignore[method-assign]

    def print(self) -> None:
        if not self.batches:
            print("        timeline: no batch committed")
            return
        origin = min(start for _, spans in self.batches for start, _ in spans.values())
        print("        timeline (ms from the run's first stage): rows, then each stage's start-end")
        print(f"        {'rows':>8}  " + "  ".join(f"{stage:>13}" for stage in STAGES))
        for records, spans in self.batches:
            cells = [f"{(spans[s][0] - origin) / 1e6:6.0f}-{(spans[s][1] - origin) / 1e6:<6.0f}" if s in spans
                     else " " * 13 for s in STAGES]
            print(f"        {records:>8}  " + "  ".join(cells))
