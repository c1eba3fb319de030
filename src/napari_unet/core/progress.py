"""Progress records, and the one convention for long jobs (segment, train, batch).

A long job is a generator that yields :class:`Progress` records and *returns*
its result (``Generator[Progress, None, T]``).  So it composes with
``result = yield from job``, napari's ``GeneratorWorker`` emits the result
on its ``returned`` signal, and :func:`run` runs one to its end.
Closing the generator (or no longer iterating) stops the job between two
records; the job's own clean-up then runs.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R", bound="Progress")


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

    """

    step: int
    total: int
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        """Share of the job done, in ``[0, 1]``."""
        return self.step / self.total if self.total else 1.0


def run(job: Generator[R, None, T], on_progress: Callable[[R], object] | None = None) -> T:
    """Run a long job to its end and return its result.

    Parameters
    ----------
    job : generator
        Yields :class:`Progress` records (or a subclass), returns the result.
    on_progress : callable, optional
        Called with every record, in order.

    Returns
    -------
    object
        The job's return value.

    Notes
    -----
    If ``on_progress`` raises (or the caller is interrupted, e.g. by Ctrl-C
    while the callback runs), the job is closed before the exception goes on,
    so it stops and cleans up at once instead of whenever it is collected.

    """
    try:
        while True:
            try:
                record = next(job)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            if on_progress is not None:
                on_progress(record)
    finally:
        job.close()


def relay(job: Generator[Progress, None, T], convert: Callable[[Progress], R]) -> Generator[R, None, T]:
    """Yield ``convert(record)`` for each record of a part of a job; return the part's result.

    For a job made of parts (planes of a stack, files of a batch, rounds of
    training) that reports each part's progress as a share of the whole::

        outcome = yield from relay(part, convert)

    Closing the whole closes the part in progress.
    """
    try:
        while True:
            try:
                record = next(job)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            yield convert(record)
    finally:
        job.close()
