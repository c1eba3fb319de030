"""The background load leaves Python's garbage collector nothing to run in full during the jobs.

Each check runs in a fresh interpreter: the load that imports torch and the
job modules happens once per process, and this test process has them already.
"""

from __future__ import annotations

import json
import subprocess
import sys

from napari_unet.core.models.registry import bundled_model_path

LOADS = """
import gc, json, sys
from napari_unet.gui import workers

events = []
gc.callbacks.append(lambda phase, info: events.append(info["generation"]) if phase == "stop" else None)
models = workers.ModelCache()
workers.preload(models, sys.argv[1])  # the first load: torch, the job modules, the model
first = list(events)
events.clear()
workers.preload(models, sys.argv[1])  # another load (a model switch): everything is in
second = list(events)
events.clear()
# then a job's worth of work: objects kept alive (CPython runs a full collection once those
# promoted to the oldest generation reach a quarter of what it kept: here some 15 %) ...
held = [[n] for n in range(len(gc.get_objects()) * 15 // 100)]
for _ in range(200):  # ... and short-lived ones, which set off collections of the younger generations
    batch = [[n] for n in range(1000)]
    del batch
print(json.dumps({"first": first, "second": second, "while_held": events, "tracked": len(gc.get_objects())}))
"""


def test_the_first_load_runs_the_full_collection_its_imports_owe_and_no_job_does() -> None:
    child = subprocess.run(
        [sys.executable, "-c", LOADS, str(bundled_model_path("nuclei"))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    events = json.loads(child.stdout.splitlines()[-1])
    assert events["first"][-1] == 2, "the first load ends with a full collection"
    assert 2 not in events["second"], "a later load runs no full collection"
    # past ten generation-1 collections, each would run a full one if a quarter were owed
    assert events["while_held"].count(1) > 10
    assert 2 not in events["while_held"], "no full collection is owed after the load"
