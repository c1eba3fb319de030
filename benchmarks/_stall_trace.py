"""What overlapped each long stall of napari's event loop: garbage collections, the job's steps, stacks.

Not a benchmark itself: ``gui_responsiveness.py --trace FILE`` uses it.  It records

- every garbage collection (``gc.callbacks``): start, duration, generation, thread;
- the collector's debt: CPython runs a full (generation 2) collection, which
  holds the interpreter lock throughout, once the objects promoted into the
  oldest generation since the last one reach a quarter of those it kept.  Each
  generation-1 collection's promotions are counted (the oldest generation's
  size before and after), and the debt is printed at the start of each phase
  with the promotions made during it; each full collection comes with the
  stack of the thread that set it off;
- every progress record a job yields, in the worker thread, with the time it was yielded;
- every tick of the event-loop timer later than a threshold (a stall);
- the stacks of all Python threads, sampled by a watchdog thread while the
  event loop is late (a thread holding the interpreter lock in C code, or a
  collection, keeps the watchdog from sampling until it lets go).

and prints, for each stall, what overlapped it.
"""

from __future__ import annotations

import functools
import gc
import json
import sys
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

LATE_S = 0.03
"""The watchdog samples stacks while the event loop's last tick is older than this."""


def _stack(frame: Any, depth: int = 8) -> list[str]:
    lines = []
    while frame is not None and len(lines) < depth:
        code = frame.f_code
        lines.append(f"{Path(code.co_filename).name}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return lines


class StallTrace:
    """Collects the events above; times are seconds since the trace started.

    Parameters
    ----------
    threshold_ms : float
        Ticks later than this are stalls.
    interval_ms : float
        The timer's interval (a tick's lateness is its gap minus this).

    """

    def __init__(self, threshold_ms: float = 50.0, interval_ms: float = 10.0) -> None:
        self.threshold = threshold_ms / 1000
        self.interval = interval_ms / 1000
        self.origin = time.perf_counter()
        self.main = threading.main_thread().ident
        self.collections: list[dict[str, Any]] = []
        self.steps: list[dict[str, Any]] = []
        self.stalls: list[dict[str, Any]] = []
        self.samples: list[dict[str, Any]] = []
        self.phases: list[tuple[float, str]] = []
        self.debts: list[dict[str, Any]] = []
        self._kept = len(gc.get_objects(generation=2))  # a lower bound until the first full collection
        self._promoted = 0
        self._open: dict[int | None, tuple[float, int, int]] = {}
        self._last_tick: float | None = None
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="stall-trace", daemon=True)

    def now(self) -> float:
        """Seconds since the trace started."""
        return time.perf_counter() - self.origin

    def _thread(self, ident: int | None) -> str:
        return "gui" if ident == self.main else f"thread-{ident}"

    # -- recording ------------------------------------------------------------------------
    def start(self) -> None:
        """Start recording collections and sampling stacks."""
        gc.callbacks.append(self._on_gc)
        self._watchdog.start()

    def stop(self) -> None:
        """Stop recording."""
        self._stop.set()
        self._watchdog.join()
        gc.callbacks.remove(self._on_gc)

    def phase(self, name: str) -> None:
        """Mark the start of a phase (its stalls are reported under this name)."""
        self.phases.append((self.now(), name))
        self._last_tick = None
        self.debts.append({"phase": name, "promoted": self._promoted, "kept": self._kept})

    def pause(self) -> None:
        """The timer stopped: no stalls (and no stack samples) until the next tick."""
        self._last_tick = None

    def tick(self) -> None:
        """Call on each timer tick (GUI thread)."""
        now = self.now()
        last, self._last_tick = self._last_tick, now
        if last is not None and now - last - self.interval > self.threshold:
            self.stalls.append({"phase": self.phases[-1][1], "start": last + self.interval, "end": now})

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        ident = threading.get_ident()
        generation = info["generation"]
        if phase == "start":
            oldest = len(gc.get_objects(generation=2)) if generation == 1 else 0
            self._open[ident] = (self.now(), generation, oldest)
            return
        began, generation, oldest = self._open.pop(ident, (self.now(), generation, 0))
        end = self.now()
        event = {
            "start": began,
            "end": end,
            "generation": generation,
            "thread": self._thread(ident),
            "collected": info["collected"],
        }
        if generation == 1:
            event["promoted"] = len(gc.get_objects(generation=2)) - oldest
            self._promoted += event["promoted"]
        elif generation == 2:
            event["debt"] = self._promoted / max(self._kept, 1)
            event["stack"] = _stack(sys._getframe(1), depth=12)
            self._kept, self._promoted = len(gc.get_objects(generation=2)), 0
        self.collections.append(event)

    def _watch(self) -> None:
        me = threading.get_ident()
        while not self._stop.wait(0.005):
            last = self._last_tick
            if last is None or self.now() - last < LATE_S:
                continue
            stacks = {
                self._thread(ident): _stack(frame)
                for ident, frame in sys._current_frames().items()
                if ident != me
            }
            self.samples.append({"time": self.now(), "stacks": stacks})

    def wrap_job(self, job: Callable[..., Generator[Any, Any, Any]], name: str) -> Callable[..., Any]:
        """``job`` (a generator function) recording each record it yields, in its own thread."""

        @functools.wraps(job)
        def traced(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            thread = self._thread(threading.get_ident())
            self.steps.append({"time": self.now(), "job": name, "thread": thread, "message": "start"})
            generator = job(*args, **kwargs)
            sent = None
            while True:
                try:
                    record = generator.send(sent)
                except StopIteration as stop:
                    self.steps.append({"time": self.now(), "job": name, "thread": thread, "message": "end"})
                    return stop.value
                message = getattr(record, "message", repr(record))
                self.steps.append({"time": self.now(), "job": name, "thread": thread, "message": message})
                sent = yield record

        return traced

    # -- report ---------------------------------------------------------------------------
    def report(self, path: str | Path) -> None:
        """Write everything to ``path`` (JSON) and print what overlapped each stall."""
        events = {
            "phases": self.phases,
            "stalls": self.stalls,
            "collections": self.collections,
            "debts": self.debts,
            "steps": self.steps,
            "samples": self.samples,
        }
        Path(path).write_text(json.dumps(events, indent=1))
        print(f"trace written to {path}")
        full = [c for c in self.collections if c["generation"] == 2]
        print(f"full (generation 2) collections: {len(full)}")
        for c in full:
            print(f"  {self._describe_gc(c)} [{self._phase_at(c['start'])}], debt {100 * c['debt']:.0f}%")
            print(f"    set off by: {' < '.join(c['stack'])}")
        print(
            "debt: objects promoted since the last full collection / those it kept (a full collection"
            " runs at 25% or more, at the first generation-1 collection after ten since the last full one)"
        )
        for debt in self.debts:
            print(
                f"  at the start of {debt['phase']}: {debt['promoted']} / {debt['kept']} "
                f"= {100 * debt['promoted'] / max(debt['kept'], 1):.0f}%"
            )
        for (start, name), (end, _) in zip(self.phases, [*self.phases[1:], (float("inf"), "")], strict=True):
            promoted = sum(c.get("promoted", 0) for c in self.collections if start <= c["start"] < end)
            print(f"  promoted during {name} (until the next phase starts): {promoted}")
        print(f"stalls over {self.threshold * 1000:.0f} ms: {len(self.stalls)}")
        for stall in self.stalls:
            self._print_stall(stall)

    def _phase_at(self, moment: float) -> str:
        names = [name for start, name in self.phases if start <= moment]
        return names[-1] if names else "start-up"

    @staticmethod
    def _describe_gc(c: dict[str, Any]) -> str:
        return (
            f"gc gen {c['generation']} {c['start']:.3f}-{c['end']:.3f} s "
            f"({(c['end'] - c['start']) * 1000:.0f} ms, {c['thread']}, {c['collected']} collected)"
        )

    def _print_stall(self, stall: dict[str, Any]) -> None:
        start, end = stall["start"], stall["end"]
        print(f"stall [{stall['phase']}] {start:.3f}-{end:.3f} s ({(end - start) * 1000:.0f} ms)")
        for c in self.collections:
            if c["end"] > start and c["start"] < end and c["end"] - c["start"] > 0.005:
                print(f"  overlaps {self._describe_gc(c)}")
        before = [s for s in self.steps if s["time"] <= start]
        if before:
            s = before[-1]
            print(f"  job step before: {s['time']:.3f} s {s['job']} ({s['thread']}): {s['message']}")
        for s in self.steps:
            if start < s["time"] <= end + 0.05:
                print(f"  job step during/just after: {s['time']:.3f} s {s['job']}: {s['message']}")
        seen: set[str] = set()
        for sample in self.samples:
            if not start <= sample["time"] <= end + 0.05:
                continue
            for thread, stack in sample["stacks"].items():
                text = " < ".join(stack[:5])
                if text and text not in seen:
                    seen.add(text)
                    print(f"  stack {sample['time']:.3f} s {thread}: {text}")
