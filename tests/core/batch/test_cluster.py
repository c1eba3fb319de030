from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import distributed
import numpy as np
import pytest
import tifffile

from napari_unet.cli import main
from napari_unet.core.batch.cluster import ClusterError, ModelSpec, connect, segment_files_on_cluster
from napari_unet.core.batch.local import BatchSettings, FileResult
from napari_unet.core.config import InferenceConfig, from_dict
from napari_unet.core.models.registry import load_model, resolve_model

SETTINGS = BatchSettings(stitch=True, overlay=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, make_stack: Callable[..., np.ndarray]) -> list[Path]:
    """A 2-D image, a 7-plane stack (split into chunks), a 2 x 2 TZ stack and a bad file."""
    folder = tmp_path_factory.mktemp("inputs")
    stack = make_stack(planes=7, seed=3)
    tifffile.imwrite(folder / "plane.tif", stack[0])
    tifffile.imwrite(folder / "stack.tif", stack, photometric="minisblack", metadata={"axes": "ZYX"})
    tifffile.imwrite(
        folder / "tz.tif",
        stack[:4].reshape(2, 2, 64, 64),
        photometric="minisblack",
        metadata={"axes": "TZYX"},
    )
    (folder / "broken.tif").write_bytes(b"II*\x00" + bytes(20))
    return sorted(folder.glob("*.tif"))


def segment_command(inputs: list[Path], out: Path) -> list[str]:
    return ["segment", *map(str, inputs), "-o", str(out), "--stitch", "--overlay", "--device", "cpu"]


@pytest.fixture(scope="module")
def local_outputs(inputs: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same command run without a cluster."""
    out = tmp_path_factory.mktemp("local")
    assert main(segment_command(inputs, out)) == 1  # broken.tif fails
    return out


def spec_of(reference: Path) -> ModelSpec:
    """The model and inference settings a reference output was made with."""
    with tifffile.TiffFile(reference / "plane.tif") as tiff:
        inference = from_dict(InferenceConfig, json.loads(tiff.pages[0].description)["inference"])
    return ModelSpec.of(load_model(resolve_model("nuclei")), "nuclei", inference)


def assert_same_outputs(out: Path, reference: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in reference.iterdir())
    assert sorted(p.name for p in reference.iterdir()) == [
        "plane.tif",
        "plane_overlay.png",
        "stack.tif",
        "stack_overlay.png",
        "tz.tif",
        "tz_overlay.png",
    ]
    for name in ("plane.tif", "stack.tif", "tz.tif"):
        np.testing.assert_array_equal(tifffile.imread(out / name), tifffile.imread(reference / name))
        with tifffile.TiffFile(out / name) as mine, tifffile.TiffFile(reference / name) as theirs:
            ours, local = (json.loads(t.pages[0].description) for t in (mine, theirs))
        for key in ("model_hash", "diameter", "input_sha256", "axes", "shape", "objects", "pixel_size"):
            assert ours.get(key) == local.get(key), key


def test_local_cluster_gives_the_local_result(
    inputs: list[Path], local_outputs: Path, tmp_path: Path
) -> None:
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        records = list(
            segment_files_on_cluster(
                inputs, tmp_path, spec_of(local_outputs), client, SETTINGS, planes_per_task=2
            )
        )
    done: dict[str, FileResult] = {
        r.finished.input.name: r.finished for r in records if r.finished is not None
    }
    assert {name: r.status for name, r in done.items()} == {
        "broken.tif": "failed",
        "plane.tif": "done",
        "stack.tif": "done",
        "tz.tif": "done",
    }
    assert "broken.tif" in done["broken.tif"].error
    assert any("4 chunks" in r.message for r in records)  # 7 planes in tasks of 2
    assert [r.step for r in records if r.finished is not None] == [1, 2, 3, 4]
    assert_same_outputs(tmp_path, local_outputs)  # no chunk folders or temporary files left


def test_workers_refuse_a_model_that_differs_from_the_clients(inputs: list[Path], tmp_path: Path) -> None:
    wrong = ModelSpec("", "nuclei", "0123456789abcdef", InferenceConfig(device="cpu"))
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        records = list(segment_files_on_cluster(inputs[1:2], tmp_path, wrong, client))
    (result,) = [r.finished for r in records if r.finished is not None]
    assert result.status == "failed" and "differs from the client's" in result.error
    assert list(tmp_path.iterdir()) == []


def test_missing_distributed_and_unreachable_scheduler_are_one_line_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, inputs: list[Path], tmp_path: Path
) -> None:
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        connect("tcp://127.0.0.1:9", timeout=1)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    assert main(["segment", str(inputs[1]), "-o", str(tmp_path), "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "needs dask.distributed: pip install 'napari-unet[dask]'" in err and "Traceback" not in err


@pytest.fixture
def scheduler_and_two_workers(tmp_path: Path) -> Iterator[str]:
    """A ``dask scheduler`` and two ``dask worker`` processes on 127.0.0.1 (random ports)."""
    dask = Path(sys.executable).parent / "dask"
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
            + ["--scheduler-file", scheduler_file],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    ]
    try:
        deadline = time.monotonic() + 30
        while not scheduler_file.is_file() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert scheduler_file.is_file(), "the scheduler did not start"
        for name in ("w1", "w2"):
            processes.append(
                subprocess.Popen(
                    [dask, "worker", "--scheduler-file", scheduler_file, "--name", name, "--nthreads", "1"]
                    + ["--host", "127.0.0.1", "--no-dashboard", "--memory-limit", "0"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                    env=env,
                )
            )
        with distributed.Client(scheduler_file=str(scheduler_file), timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield json.loads(scheduler_file.read_text())["address"]
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def worker_models(address: str) -> dict[str, int]:
    """Models loaded per worker name."""

    def loaded() -> int:
        from napari_unet.core.batch import cluster as runner

        return len(runner._SEGMENTERS)

    with distributed.Client(address, timeout=30) as client:
        counts = client.run(loaded)
        names = {a: w["name"] for a, w in client.scheduler_info()["workers"].items()}
    return {names[a]: n for a, n in counts.items()}


@pytest.mark.slow
def test_scheduler_and_two_worker_processes_give_the_local_result(
    scheduler_and_two_workers: str, inputs: list[Path], local_outputs: Path, tmp_path: Path
) -> None:
    address = scheduler_and_two_workers
    out = tmp_path / "out"
    command = segment_command(inputs, out)
    assert main([*command, "--scheduler", address, "--planes-per-task", "3"]) == 1  # broken.tif fails
    assert_same_outputs(out, local_outputs)
    assert worker_models(address) == {"w1": 1, "w2": 1}  # both workers took tasks
