"""``kill -9`` while a person corrects and the model fine-tunes: nothing on disk is left broken.

A child process does what the widget's continuous fine-tuning does, with the
core only: it rewrites a plane's correction (a person going on correcting),
trains a few steps on all corrections, and saves the result as the next model
version, over and over, announcing each step on stdout.  The test kills it with
SIGKILL right after a chosen announcement (while a correction is written,
while it trains, while a version is saved) and then checks the folders:
every model file in the store loads, every version announced as saved is
there, every correction file opens and holds the last content announced as
written (or the one being written, never a mix), and the next run goes on
(the store's lock died with the process).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from napari_unet.core.models.registry import MODEL_SUFFIX, load_model
from napari_unet.core.models.store import list_versions
from napari_unet.core.training.corrections import CorrectionStore

CHILD = r"""
import json, sys
import numpy as np, torch
torch.set_num_threads(1)
from napari_unet.core.config import ModelConfig, PostprocessConfig, PreprocessConfig, TrainingConfig
from napari_unet.core.training.corrections import Correction, CorrectionSet, CorrectionStore, training_samples
from napari_unet.core.models.network import UNet
from napari_unet.core.models.store import current_version, save_version
from napari_unet.core.training.loop import train
from napari_unet.core.progress import run
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.registry import load_model

sys.path.insert(0, sys.argv[2])
from test_kill_during_fine_tuning import correction_arrays

def say(**event):
    print(json.dumps(event), flush=True)

corrections = CorrectionSet(CorrectionStore(sys.argv[1]))
latest = current_version("tiny")
if latest is None:
    torch.manual_seed(0)
    bundle = ModelBundle(
        network=UNet(ModelConfig(base_width=4, depth=2)), preprocess=PreprocessConfig(rescale=False),
        postprocess=PostprocessConfig(min_size=0), name="tiny",
    )
else:
    bundle = load_model(latest.path)
config = TrainingConfig(steps=2, batch_size=1, crop_size=32, validate_every=0, amp=False)
start = int(sys.argv[3])
for round_number in range(start, start + 1000):
    plane = (round_number % 2,)  # two planes, each rewritten every other round
    image, labels, edited = correction_arrays(round_number)
    say(event="writing", round=round_number, plane=plane[0])
    corrections.update(Correction("cells-0123", plane, image, labels, edited, generation=0))
    say(event="written", round=round_number, plane=plane[0])
    say(event="training", round=round_number)
    bundle = run(train(bundle, training_samples(corrections.snapshot(), bundle), config))
    say(event="saving", round=round_number)
    version = save_version(bundle)
    say(event="saved", round=round_number, version=version.name)
"""


def correction_arrays(round_number: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the person's correction looks like after ``round_number`` rounds (deterministic)."""
    rng = np.random.default_rng(round_number)
    image = rng.random((48, 48)).astype(np.float32)
    labels = np.zeros((48, 48), np.int32)
    labels[8:20, 8:20] = 1
    labels[24 : 30 + round_number % 10, 24:40] = round_number + 2
    edited = np.zeros((48, 48), bool)
    edited[20:44, 20:44] = True
    return image, labels, edited


def run_until(folder: Path, start: int, event: str, count: int, delay: float) -> list[dict]:
    """Run the child until it announced ``event`` ``count`` times, wait ``delay`` s, then SIGKILL it."""
    env = {**os.environ, "NAPARI_UNET_MODEL_DIR": str(folder / "models"), "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(folder / "corrections"), str(Path(__file__).parent), str(start)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    events: list[dict] = []
    try:
        assert child.stdout is not None
        for line in child.stdout:
            events.append(json.loads(line))
            if sum(e["event"] == event for e in events) == count:
                time.sleep(delay)
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.kill()
        # what the child announced between the chosen event and its death is still in the pipe
        rest, stderr = child.communicate(timeout=60)
    events += [json.loads(line) for line in rest.splitlines() if line.strip()]
    assert child.returncode == -signal.SIGKILL, stderr
    return events


def check_folders(folder: Path, events: list[dict]) -> None:
    models = folder / "models"
    files = [p for p in models.glob(f"*{MODEL_SUFFIX}") if not p.name.startswith(".")]
    for path in files:
        load_model(path)  # raises on a truncated or corrupt file
    saved = {e["version"] for e in events if e["event"] == "saved"}
    assert saved <= {v.name for v in list_versions(folder=models)}
    assert {v.path for v in list_versions(folder=models)} == set(files)

    store = CorrectionStore(folder / "corrections")
    for path in (folder / "corrections").rglob("plane-*.npz"):
        with np.load(path, allow_pickle=False) as data:  # every correction file opens
            assert {"image", "labels", "edited", "meta"} <= set(data.files)
    (key,) = store.keys()
    on_disk = {c.plane[0]: c for c in store.load(key)}
    for plane in (0, 1):
        written = [e["round"] for e in events if e["event"] == "written" and e["plane"] == plane]
        started = [e["round"] for e in events if e["event"] == "writing" and e["plane"] == plane]
        if not written and not started:
            continue
        allowed = {max(written)} if written else set()
        if started and (not written or max(started) > max(written)):
            allowed.add(max(started))  # killed while writing it: old or new, both whole
        if plane not in on_disk:  # killed while writing its first version: no file, not a broken one
            assert not written, f"plane {plane} was written but is gone"
            continue
        correction = on_disk[plane]
        matches = [
            r
            for r in allowed
            if all(
                np.array_equal(saved, expected)
                for saved, expected in zip(
                    (correction.image, correction.labels, correction.edited),
                    correction_arrays(r),
                    strict=True,
                )
            )
        ]
        assert matches, f"plane {plane}: content of none of rounds {sorted(allowed)}"


KILL_POINTS = [
    ("writing", 2, 0.0),  # while a correction file is written
    ("training", 2, 0.05),  # in the middle of training steps
    ("saving", 2, 0.0),  # as a version is being saved (lock, counter, model file, rename)
]


@pytest.mark.slow
def test_kill_9_leaves_models_and_corrections_whole(tmp_path: Path) -> None:
    events: list[dict] = []
    for event, count, delay in KILL_POINTS:  # one store: each run continues after the last kill
        start = max((e["round"] for e in events), default=-1) + 1
        events += run_until(tmp_path, start, event, count, delay)
        check_folders(tmp_path, events)
        # the run after a kill saved versions again: the store's lock did not outlive its holder
        assert any(e["event"] == "saved" and e["round"] >= start for e in events)
