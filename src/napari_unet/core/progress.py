"""Progress records yielded by every long job (segment, train, batch)."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of a long job.

    Parameters
    ----------
    step : int
        Steps done so far (``0 <= step <= total``).
    total : int
        Steps the job will take.
    message : str
        A short human-readable line ("tile 3/12", "step 40/100").
    metrics : dict
        Numbers worth showing or plotting, e.g. ``{"loss": 0.31}``.
    result : object
        The job's result, set on the final record only.

    """

    step: int
    total: int
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    result: Any = None

    @property
    def fraction(self) -> float:
        """Share of the job done, in ``[0, 1]``."""
        return self.step / self.total if self.total else 1.0


def final_result(records: Iterable[Progress]) -> Any:
    """Run a long job to its end (no progress shown) and return its final record's result."""
    result = None
    for record in records:
        result = record.result if record.result is not None else result
    return result


def relay(
    job: Generator[Progress, None, T], convert: Callable[[Progress], Progress]
) -> Generator[Progress, None, T]:
    """Yield ``convert(record)`` for each record of a sub-job; return the sub-job's return value.

    For a job made of parts (planes of a stack, files of a batch) that reports
    each part's progress as a share of the whole: ``value = yield from relay(part, convert)``.
    """
    while True:
        try:
            record = next(job)
        except StopIteration as stop:
            return stop.value
        yield convert(record)
