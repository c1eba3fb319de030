"""The one batch entry point: here or on a Dask scheduler, chosen by ``scheduler`` alone."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import distributed
import numpy as np
import pytest
import tifffile

from napari_unet.core.batch.local import BatchProgress, BatchSettings
from napari_unet.core.batch.runner import BatchStart, ClusterError, segment_batch
from napari_unet.core.config import InferenceConfig
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.progress import run

INFERENCE = InferenceConfig(device="cpu", diameter=16)  # objects of a given size: no estimate (faster)


@pytest.fixture(scope="module")
def nuclei() -> ModelBundle:
    return load_model(resolve_model("nuclei"))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, make_stack: Callable[..., np.ndarray]) -> list[Path]:
    folder = tmp_path_factory.mktemp("inputs")
    stack = make_stack(planes=5, seed=4)
    tifffile.imwrite(folder / "plane.tif", stack[0])
    tifffile.imwrite(folder / "stack.tif", stack, photometric="minisblack", metadata={"axes": "ZYX"})
    return sorted(folder.glob("*.tif"))


def test_here_and_on_a_cluster_give_the_same_files_and_records(
    inputs: list[Path], nuclei: ModelBundle, tmp_path: Path
) -> None:
    settings = BatchSettings(stitch=True)
    records: dict[str, list[BatchProgress]] = {"here": [], "cluster": []}
    here = run(
        segment_batch(inputs, tmp_path / "here", nuclei, "nuclei", INFERENCE, settings=settings),
        records["here"].append,
    )
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
    ):
        address = cluster.scheduler_address
        on_cluster = run(
            segment_batch(
                inputs,
                tmp_path / "cluster",
                nuclei,
                "nuclei",
                INFERENCE,
                settings=settings,
                scheduler=address,
                planes_per_task=2,
            ),
            records["cluster"].append,
        )

    start = records["here"][0]
    assert isinstance(start, BatchStart) and start.where == "cpu"
    assert start.message == "model nuclei on cpu; 2 input(s)"
    (start,) = [r for r in records["cluster"] if isinstance(r, BatchStart)]
    assert start.where == f"the Dask cluster at {address}" and "(1 workers now); 2 input(s)" in start.message
    assert any("planned, 3 chunks" in r.message for r in records["cluster"])  # 5 planes in tasks of 2
    assert [r.input.name for r in here] == [r.input.name for r in on_cluster] == ["plane.tif", "stack.tif"]
    assert [r.status for r in here] == [r.status for r in on_cluster] == ["done", "done"]
    for name in ("plane.tif", "stack.tif"):
        np.testing.assert_array_equal(
            tifffile.imread(tmp_path / "here" / name), tifffile.imread(tmp_path / "cluster" / name)
        )
    for kind in records:  # each finished file is announced once, with the count of finished files
        assert [r.step for r in records[kind] if r.finished is not None] == [1, 2]


def test_a_cluster_that_cannot_be_used_stops_the_batch_before_any_work(
    inputs: list[Path], nuclei: ModelBundle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    job = segment_batch(inputs, tmp_path / "out", nuclei, "nuclei", INFERENCE, scheduler="tcp://127.0.0.1:9")
    assert next(job).message == "connecting to tcp://127.0.0.1:9"
    with pytest.raises(ClusterError, match="needs dask.distributed"):
        next(job)
    assert not (tmp_path / "out").exists()
