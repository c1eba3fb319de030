"""The one convention for long jobs: generators that yield Progress records and return their result."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from napari_unet.core.progress import Progress, relay, run


def counting(steps: int, cleaned: list[str] | None = None) -> Generator[Progress, None, int]:
    """A job of ``steps`` steps whose result is the sum of the step numbers; notes its clean-up."""
    total = 0
    try:
        for step in range(1, steps + 1):
            total += step
            yield Progress(step, steps, f"step {step}/{steps}", {"total": float(total)})
        return total
    finally:
        if cleaned is not None:
            cleaned.append("cleaned")


def test_run_returns_the_result_and_shows_every_record_in_order() -> None:
    seen: list[Progress] = []
    assert run(counting(4), seen.append) == 10
    assert [r.step for r in seen] == [1, 2, 3, 4]
    assert [r.metrics["total"] for r in seen] == [1.0, 3.0, 6.0, 10.0]
    assert run(counting(3)) == 6  # no callback: progress is simply not shown


def test_a_failing_callback_stops_the_job_and_cleans_it_up_at_once() -> None:
    cleaned: list[str] = []

    def interrupt(record: Progress) -> None:
        if record.step == 2:
            raise KeyboardInterrupt

    job = counting(5, cleaned)
    with pytest.raises(KeyboardInterrupt):
        run(job, interrupt)
    assert cleaned == ["cleaned"]  # closed by run, not left for the garbage collector
    with pytest.raises(StopIteration):
        next(job)


def test_an_error_inside_the_job_reaches_the_caller() -> None:
    def failing() -> Generator[Progress, None, int]:
        yield Progress(0, 1, "starting")
        raise ValueError("broken.tif: not a TIFF file")

    with pytest.raises(ValueError, match="broken.tif"):
        run(failing())


def test_a_job_made_of_parts_reports_each_part_as_a_share_of_the_whole() -> None:
    def whole() -> Generator[Progress, None, list[int]]:
        results = []
        for part in range(2):

            def of_whole(record: Progress, part: int = part) -> Progress:
                return Progress(round((part + record.fraction) * 100), 200, f"part {part}: {record.message}")

            results.append((yield from relay(counting(4), of_whole)))
        return results

    seen: list[Progress] = []
    assert run(whole(), seen.append) == [10, 10]
    assert [r.step for r in seen] == [25, 50, 75, 100, 125, 150, 175, 200]
    assert seen[0].message == "part 0: step 1/4" and seen[-1].message == "part 1: step 4/4"


def test_closing_a_job_made_of_parts_closes_the_part_in_progress() -> None:
    cleaned: list[str] = []

    def whole() -> Generator[Progress, None, int]:
        return (yield from relay(counting(5, cleaned), lambda record: record))

    job = whole()
    next(job)
    job.close()
    assert cleaned == ["cleaned"]


@pytest.mark.parametrize(("step", "total", "fraction"), [(0, 4, 0.0), (1, 4, 0.25), (4, 4, 1.0), (0, 0, 1.0)])
def test_fraction(step: int, total: int, fraction: float) -> None:
    assert Progress(step, total).fraction == fraction
