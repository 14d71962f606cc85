"""Peak memory of a piece of work on the CPU, from the PyTorch profiler's allocation events.

On a GPU ``torch.cuda.max_memory_allocated`` says it; on the CPU nothing does, so the profiler records
every tensor allocation and free and :func:`peak_of` replays them. Used by ``siu unlearn --plan`` and
the scripts in ``benchmarks/``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


def peak_of(prof: Any) -> int:
    """Highest running total of the bytes allocated (and freed, negative) by each profiled op.

    Each op's own allocations (``self_cpu_memory_usage``, children excluded, so nothing counts twice)
    are placed at its start; frees outside any op are ``[memory]`` events of their own.
    """
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    total = peak = 0
    for e in events:
        total += e.self_cpu_memory_usage
        peak = max(peak, total)
    return peak


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """The profiler's C++ side prints a line to the process's stderr when it starts and stops."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cpu_peak(work: Callable[[], T]) -> tuple[T, int]:
    """``work()``'s result and the peak bytes of the CPU tensors it allocated (above what existed)."""
    from torch.profiler import ProfilerActivity, profile

    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _native_stderr_silenced():
        prof.__enter__()
    try:
        result = work()
    finally:
        with _native_stderr_silenced():
            prof.__exit__(None, None, None)
    return result, peak_of(prof)
