"""Where a path's CPU goes inside this process: every thread's CPU clock (Linux
/proc/self/task/<tid>/stat), read every `every` seconds while the path runs and once at its end,
summed by role:

    event loop      the main thread (asyncio or uvloop, asyncpg's protocol, the pipeline's loop)
    Kafka consumer  the source's consumer thread (`conduitd-kafka-*`: confluent-kafka's consume(),
                    which builds a Message per record, and the grouping by partition)
    librdkafka      the client's own threads (`rdk:*`: fetching, protocol decoding)
    workers         the event loop's executor threads (decode, quality, casts, COPY encoding)
    native          threads Python did not start (pyarrow's CPU pool, allocators)
    other Python    any other thread started from Python

A thread that ended between two reads loses its CPU since the last read; `unattributed` is the
process's CPU (os.times) minus the sum of the roles, so nothing hides.

    async with ThreadCpu() as threads:
        ...  # run the path
    threads.by_role()   # {"event loop": 1.2, "workers": 3.4, ...} CPU seconds
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from benchmarks.sampling import Sampler

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
ROLES = ("event loop", "Kafka consumer", "librdkafka", "workers", "native", "other Python", "unattributed")


def _task_cpu() -> dict[int, tuple[str, float]]:
    """tid -> (its OS name, its CPU seconds) for every thread of this process now."""
    seen: dict[int, tuple[str, float]] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        name = stat[stat.find("(") + 1:stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2:].split()
        seen[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / _TICK)
    return seen


def role_of(os_name: str, python_name: str | None) -> str:
    if python_name == threading.main_thread().name:
        return "event loop"
    if python_name is not None and python_name.startswith("conduitd-kafka-"):
        return "Kafka consumer"
    if os_name.startswith("rdk:"):
        return "librdkafka"
    if python_name is not None and python_name.startswith(("asyncio_", "uvloop_", "ThreadPoolExecutor")):
        return "workers"
    return "native" if python_name is None else "other Python"


class ThreadCpu(Sampler):
    """Samples this process's threads until the `async with` block ends."""

    def __init__(self, every: float = 0.2) -> None:
        super().__init__(every)
        self._start: dict[int, float] = {}
        self._last: dict[int, float] = {}
        self._roles: dict[int, str] = {}
        self._process = 0.0

    def _read(self) -> None:
        python_names = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        for tid, (os_name, cpu) in _task_cpu().items():
            self._last[tid] = max(self._last.get(tid, 0.0), cpu)
            if tid in python_names or tid not in self._roles:
                self._roles[tid] = role_of(os_name, python_names.get(tid))

    async def sample(self) -> None:
        self._read()

    def by_role(self) -> dict[str, float]:
        """CPU seconds per role (`ROLES`), each rounded to 10 ms."""
        roles = dict.fromkeys(ROLES, 0.0)
        for tid, cpu in self._last.items():
            roles[self._roles[tid]] += cpu - self._start.get(tid, 0.0)
        roles["unattributed"] = max(0.0, self._process - sum(roles.values()))
        return {role: round(seconds, 2) for role, seconds in roles.items()}

    async def begin(self) -> None:
        times = os.times()
        self._process = -(times.user + times.system)
        self._start = {tid: cpu for tid, (_, cpu) in _task_cpu().items()}

    async def end(self) -> None:
        times = os.times()
        self._process += times.user + times.system


def print_threads(roles: dict[str, float], rows: int, cpu: dict[str, object]) -> None:
    """One line of a run's CPU by role, in CPU seconds per million rows; kept in `cpu` (the
    run's JSON) as `threads_cpu_s`."""
    cpu["threads_cpu_s"] = roles
    per_m = 1e6 / rows if rows else 0.0
    print("        threads, CPU s per M rows: " + ", ".join(
        f"{role} {seconds * per_m:.2f}" for role, seconds in roles.items() if seconds), flush=True)
