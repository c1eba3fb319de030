from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.core.batch.local import BatchProgress, BatchSettings, FileResult, segment_files
from napari_unet.core.config import InferenceConfig
from napari_unet.core.io.stacks import PixelSize, TiffImage
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.segmentation.segmenter import Segmenter, segment_array


@pytest.fixture(scope="module")
def segmenter() -> Segmenter:
    return Segmenter(load_model(resolve_model("nuclei")), InferenceConfig(device="cpu"))


@pytest.fixture(scope="module")
def sized() -> Segmenter:
    """Objects of a given size: no estimate (faster), where the estimate is not the point."""
    return Segmenter(load_model(resolve_model("nuclei")), InferenceConfig(device="cpu", diameter=16))


def results(records: list[BatchProgress]) -> dict[str, FileResult]:
    return {r.finished.input.name: r.finished for r in records if r.finished is not None}


def run(inputs: list[Path], outdir: Path, segmenter: Segmenter, **settings: object) -> dict[str, FileResult]:
    return results(list(segment_files(inputs, outdir, segmenter, BatchSettings(**settings))))  # type: ignore[arg-type]


@pytest.mark.parametrize(("axes", "stitch"), [("ZYX", False), ("ZYX", True), ("TZYX", True)])
def test_streamed_stack_equals_the_in_memory_result(
    tmp_path: Path, segmenter: Segmenter, make_stack: Callable[..., np.ndarray], axes: str, stitch: bool
) -> None:
    stack = make_stack(planes=6)
    if axes == "TZYX":
        stack = stack.reshape(2, 3, *stack.shape[1:])
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack", metadata={"axes": axes})
    done = run([tmp_path / "stack.tif"], tmp_path / "out", segmenter, stitch=stitch)
    expected = segment_array(stack, segmenter.bundle, axes=axes, inference=segmenter.inference, stitch=stitch)
    labels = tifffile.imread(tmp_path / "out" / "stack.tif")
    assert labels.shape == stack.shape and labels.dtype == np.uint16
    np.testing.assert_array_equal(labels, expected.labels)
    assert done["stack.tif"].objects == len(np.unique(expected.labels)) - 1 > 0
    if stitch:  # drifting discs stay one object through the planes of each stack
        assert done["stack.tif"].objects < (len(np.unique(expected.labels[..., 0, :, :])) - 1) * 3


def test_rare_layout_with_planes_last_is_written_whole(
    tmp_path: Path, sized: Segmenter, make_stack: Callable[..., np.ndarray]
) -> None:
    stack = np.moveaxis(make_stack(planes=3), 0, -1)  # (Y, X, Z)
    tifffile.imwrite(tmp_path / "yxz.tif", stack, photometric="minisblack")
    run([tmp_path / "yxz.tif"], tmp_path / "out", sized, axes="YXZ")
    expected = segment_array(stack, sized.bundle, axes="YXZ", inference=sized.inference)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "yxz.tif"), expected.labels)


def peak_traced_bytes(job: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        job()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_planes(
    tmp_path: Path, sized: Segmenter, make_stack: Callable[..., np.ndarray]
) -> None:
    peaks = {}
    for planes in (3, 11):
        path = tmp_path / f"s{planes}.tif"
        tifffile.imwrite(
            path, make_stack(planes=planes, size=128), compression="zlib", photometric="minisblack"
        )
        peaks[planes] = peak_traced_bytes(lambda p=path: run([p], tmp_path / "out", sized))
    # 8 more planes of 128 x 128 would cost 8 x 128 x 128 x (2 + 4) bytes = 790 kB held whole
    assert peaks[11] - peaks[3] < 300_000, peaks


def test_provenance_and_pixel_size_travel_to_the_output(
    tmp_path: Path, segmenter: Segmenter, make_stack: Callable[..., np.ndarray]
) -> None:
    tifffile.imwrite(
        tmp_path / "ij.tif",
        make_stack(planes=3),
        imagej=True,
        resolution=(1 / 0.65, 1 / 0.65),
        metadata={"axes": "ZYX", "spacing": 2.5, "unit": "micron"},
    )
    started = tmp_path.stat().st_mtime
    run([tmp_path / "ij.tif"], tmp_path / "out", segmenter, stitch=True, provenance="full")
    with tifffile.TiffFile(tmp_path / "out" / "ij.tif") as tiff:
        meta = json.loads(tiff.pages[0].description)
        x_resolution = tiff.pages[0].tags["XResolution"].value
    assert meta["model"] == "nuclei" and meta["model_hash"] == segmenter.bundle.weights_hash()
    assert meta["model_source"].endswith("nuclei.pt") and meta["model_trained"]
    assert meta["versions"]["napari-unet"] and meta["versions"]["torch"]
    assert meta["inference"]["device"] == "cpu" and meta["postprocess"]["min_size"] > 0
    assert meta["stitch"] is True and meta["diameter"] > 0 and meta["device"] == "cpu"
    assert meta["input"] == str((tmp_path / "ij.tif").resolve())
    assert meta["input_bytes"] == (tmp_path / "ij.tif").stat().st_size
    assert len(meta["input_sha256"]) == 64 and meta["input_axes"] == "ZYX" and meta["axes"] == "ZYX"
    assert meta["date"] >= "2020" and meta["seconds"] >= 0 and meta["objects"] > 0
    assert started > 0
    assert meta["pixel_size"] == {"x": pytest.approx(0.65), "y": pytest.approx(0.65), "z": 2.5, "unit": "µm"}
    assert x_resolution[0] / x_resolution[1] == pytest.approx(1e4 / 0.65, rel=1e-6)  # pixels per cm
    with TiffImage(tmp_path / "out" / "ij.tif") as labels:
        assert labels.pixel_size == PixelSize(pytest.approx(0.65), pytest.approx(0.65), 2.5, "µm")


def bad_inputs(folder: Path, good: np.ndarray) -> list[Path]:
    """A folder of bad files, each broken differently."""
    (folder / "empty.tif").write_bytes(b"")
    (folder / "random.tif").write_bytes(np.random.default_rng(1).bytes(4000))
    tifffile.imwrite(folder / "stack.tif", good, compression="zlib", photometric="minisblack")
    whole = (folder / "stack.tif").read_bytes()
    (folder / "truncated.tif").write_bytes(whole[: len(whole) // 2])
    # a stack whose fourth plane is damaged: fails after three planes are written
    with tifffile.TiffFile(folder / "stack.tif") as tiff:
        offset = tiff.pages[3].dataoffsets[0]
    damaged = bytearray(whole)
    damaged[offset + 10 : offset + 200] = bytes(190)
    (folder / "damaged.tif").write_bytes(bytes(damaged))
    tifffile.imwrite(folder / "complex.tif", np.zeros((32, 32), np.complex64))
    tifffile.imwrite(folder / "line.tif", np.zeros(32, np.uint16))
    with warnings.catch_warnings():  # tifffile warns that it writes a zero-size image
        warnings.simplefilter("ignore", UserWarning)
        tifffile.imwrite(folder / "nopixels.tif", np.zeros((0, 32), np.uint16))
    (folder / "photo.tif").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    return [folder / "vanished.tif"]  # listed, then gone before it was read


def test_outputs_name_their_input_and_model_by_file_name_unless_asked_for_more(
    tmp_path: Path, sized: Segmenter, make_stack: Callable[..., np.ndarray]
) -> None:
    tifffile.imwrite(tmp_path / "stack.tif", make_stack(planes=2), photometric="minisblack")
    descriptions = {}
    for detail in ("minimal", "full"):
        run([tmp_path / "stack.tif"], tmp_path / detail, sized, provenance=detail)
        with tifffile.TiffFile(tmp_path / detail / "stack.tif") as tiff:
            descriptions[detail] = tiff.pages[0].description
    minimal, full = (json.loads(descriptions[d]) for d in ("minimal", "full"))
    assert minimal["input"] == "stack.tif" and minimal["model_source"] == "nuclei.pt"
    assert "host" not in minimal
    # no absolute path and no host name anywhere in what a shared file carries
    assert (
        str(tmp_path) not in descriptions["minimal"] and socket.gethostname() not in descriptions["minimal"]
    )
    assert full["input"] == str((tmp_path / "stack.tif").resolve()) and full["host"] == socket.gethostname()
    assert full["model_source"] == sized.bundle.source
    assert (
        minimal["input_sha256"]
        == full["input_sha256"]
        == hashlib.sha256((tmp_path / "stack.tif").read_bytes()).hexdigest()
    )
    np.testing.assert_array_equal(
        tifffile.imread(tmp_path / "minimal" / "stack.tif"), tifffile.imread(tmp_path / "full" / "stack.tif")
    )


def test_bad_files_never_stop_the_batch(
    tmp_path: Path, sized: Segmenter, make_stack: Callable[..., np.ndarray]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    vanished = bad_inputs(folder, make_stack(planes=6))
    inputs = sorted(folder.glob("*.tif")) + vanished
    done = run(inputs, tmp_path / "out", sized)
    assert done["stack.tif"].status == "done"
    failed = {name: r.error for name, r in done.items() if r.status == "failed"}
    assert sorted(failed) == sorted(
        ["empty.tif", "random.tif", "truncated.tif", "damaged.tif", "complex.tif", "line.tif", "nopixels.tif"]
        + ["photo.tif", "vanished.tif"]
    )
    for name, error in failed.items():
        assert name in error and "\n" not in error and "unexpected" not in error, error
    assert "unsupported pixel type" in failed["complex.tif"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["stack.tif"]


def test_existing_complete_outputs_are_skipped_incomplete_ones_redone(
    tmp_path: Path, sized: Segmenter, make_stack: Callable[..., np.ndarray]
) -> None:
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(tmp_path / name, make_stack(planes=2), photometric="minisblack")
    out = tmp_path / "out"
    run([tmp_path / "a.tif"], out, sized)
    first = (out / "a.tif").stat().st_mtime_ns
    (out / "b.tif").write_bytes(b"II*\x00 an output cut short by a disk failure")
    done = run([tmp_path / "a.tif", tmp_path / "b.tif"], out, sized)
    assert done["a.tif"].status == "skipped" and (out / "a.tif").stat().st_mtime_ns == first
    assert done["b.tif"].status == "done" and tifffile.imread(out / "b.tif").shape == (2, 64, 64)
    done = run([tmp_path / "a.tif"], out, sized, overwrite=True)
    assert done["a.tif"].status == "done" and (out / "a.tif").stat().st_mtime_ns != first


def test_resume_after_a_crash_gives_the_uninterrupted_result(
    tmp_path: Path, sized: Segmenter, make_stack: Callable[..., np.ndarray]
) -> None:
    inputs = []
    for seed in range(3):
        inputs.append(tmp_path / f"s{seed}.tif")
        tifffile.imwrite(inputs[-1], make_stack(planes=3, seed=seed), photometric="minisblack")
    run(inputs, tmp_path / "reference", sized, stitch=True, overlay=True)

    out = tmp_path / "out"
    records = segment_files(inputs, out, sized, BatchSettings(stitch=True, overlay=True))
    seen = []
    for record in records:  # stop in the middle of the second file
        seen.append(record)
        if record.step == 1 and record.metrics["file"] > 0.5:
            break
    partial = [p for p in out.iterdir() if p.name.startswith(".s1.tif.")]
    assert len(partial) == 1, "the second file is being written under a temporary name"
    # a crash (kill -9) leaves the temporary file behind: copy it under the name of a dead writer
    host_prefix = partial[0].name.split("-", 1)[0]
    crashed = out / f"{host_prefix}-{dead_pid()}.abc123.part"
    crashed.write_bytes(partial[0].read_bytes())
    records.close()  # the live writer's own temporary file goes with it
    assert sorted(p.name for p in out.iterdir()) == sorted(["s0.tif", "s0_overlay.png", crashed.name])

    done = run(inputs, out, sized, stitch=True, overlay=True)
    assert [done[p.name].status for p in inputs] == ["skipped", "done", "done"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "reference").iterdir())
    for path in inputs:
        np.testing.assert_array_equal(
            tifffile.imread(out / path.name), tifffile.imread(tmp_path / "reference" / path.name)
        )


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    assert not os.path.exists(f"/proc/{process.pid}") or sys.platform != "linux"
    return process.pid


def test_progress_reports_files_and_the_share_of_the_current_file(
    tmp_path: Path, sized: Segmenter, make_stack: Callable[..., np.ndarray]
) -> None:
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(tmp_path / name, make_stack(planes=3), photometric="minisblack")
    records = list(segment_files([tmp_path / "a.tif", tmp_path / "b.tif"], tmp_path / "out", sized))
    overall = [(r.step + r.metrics["file"]) / r.total for r in records]
    assert overall == sorted(overall) and overall[-1] == 1.0
    assert [r.step for r in records if r.finished is not None] == [1, 2]
    assert any(0 < r.metrics["file"] < 1 for r in records)


def test_an_output_folder_that_holds_the_inputs_never_overwrites_them(
    tmp_path: Path, sized: Segmenter, make_stack: Callable[..., np.ndarray]
) -> None:
    tifffile.imwrite(tmp_path / "a.tif", make_stack(planes=2), photometric="minisblack")
    before = (tmp_path / "a.tif").read_bytes()
    done = run([tmp_path / "a.tif"], tmp_path, sized)
    assert done["a.tif"].status == "failed" and "would replace it" in done["a.tif"].error
    assert (tmp_path / "a.tif").read_bytes() == before
