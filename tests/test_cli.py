import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.cli import main


@pytest.fixture(scope="module")
def real_inputs(tmp_path_factory: pytest.TempPathFactory, nuclei_val: Path) -> Path:
    """Two real DSB validation images plus three bad files in one folder."""
    folder = tmp_path_factory.mktemp("inputs")
    for path in sorted((nuclei_val / "images").glob("*.tif"))[:2]:
        shutil.copy(path, folder / path.name)
    (folder / "empty.tif").write_bytes(b"")
    (folder / "random.tif").write_bytes(np.random.default_rng(0).bytes(5000))
    good = sorted(folder.glob("*.tif"))[0].read_bytes()
    (folder / "truncated.tif").write_bytes(good[:200])
    return folder


def test_segment_folder_end_to_end_with_bad_files(real_inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "napari_unet.cli", "segment", str(real_inputs), "-o", str(out), "--overlay"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("napari-unet: error:")]
    assert len(errors) == 4  # three bad files and the summary
    for name in ("empty.tif", "random.tif", "truncated.tif"):
        assert any(name in line for line in errors)
        assert not (out / name).exists()
    bad = {"empty.tif", "random.tif", "truncated.tif"}
    good = [p for p in sorted(real_inputs.glob("*.tif")) if p.name not in bad]
    assert len(good) == 2
    for path in good:
        labels = tifffile.imread(out / path.name)
        assert labels.shape == tifffile.imread(path).shape
        assert labels.dtype in (np.uint16, np.uint32)
        assert labels.max() > 0
        assert (out / f"{path.stem}_overlay.png").is_file()
        with tifffile.TiffFile(out / path.name) as tiff:
            provenance = json.loads(tiff.pages[0].description)
        assert provenance["model"] == "nuclei" and provenance["input"].endswith(path.name)
    assert not list(out.glob(".*part")), "temporary files left behind"


def test_segment_resumes_and_overwrites(
    nuclei_val: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image = sorted((nuclei_val / "images").glob("*.tif"))[0]
    out = tmp_path / "out"
    assert main(["segment", str(image), "-o", str(out)]) == 0
    first = (out / image.name).stat().st_mtime_ns
    assert main(["segment", str(image), "-o", str(out)]) == 0
    assert "skipped" in capsys.readouterr().err
    assert (out / image.name).stat().st_mtime_ns == first
    assert main(["segment", str(image), "-o", str(out), "--overwrite"]) == 0
    assert (out / image.name).stat().st_mtime_ns != first


def test_segment_stack_keeps_spatial_shape(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    stack = np.zeros((3, 64, 80), np.uint16)
    yy, xx = np.mgrid[:64, :80]
    for z in range(3):
        for _ in range(5):
            cy, cx = rng.integers(10, 54), rng.integers(10, 70)
            stack[z][(yy - cy) ** 2 + (xx - cx) ** 2 < 36] = 1000
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    assert main(["segment", str(tmp_path / "stack.tif"), "-o", str(tmp_path / "out"), "--axes", "ZYX"]) == 0
    assert tifffile.imread(tmp_path / "out" / "stack.tif").shape == (3, 64, 80)


def test_provenance_keeps_paths_and_host_only_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_unet.core.io.provenance import PROVENANCE_DETAILS

    image = np.zeros((48, 48), np.uint16)
    image[10:22, 10:22] = image[28:40, 26:38] = 1000
    tifffile.imwrite(tmp_path / "cells.tif", image)
    recorded = {}
    for detail in (None, "full"):
        out = tmp_path / str(detail)
        option = ["--provenance", detail] if detail else []
        assert (
            main(["segment", str(tmp_path / "cells.tif"), "-o", str(out), "--diameter", "16", *option]) == 0
        )
        with tifffile.TiffFile(out / "cells.tif") as tiff:
            recorded[detail] = json.loads(tiff.pages[0].description)
    assert recorded[None]["input"] == "cells.tif" and "host" not in recorded[None]  # minimal by default
    assert recorded["full"]["input"] == str((tmp_path / "cells.tif").resolve()) and recorded["full"]["host"]

    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = capsys.readouterr().out
    assert f"--provenance {{{','.join(PROVENANCE_DETAILS)}}}" in text
    assert "absolute paths and the host name" in text


class Terminal(io.StringIO):
    """What a terminal receives."""

    def isatty(self) -> bool:
        return True


def test_progress_bars_are_drawn_on_a_terminal_only(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = np.zeros((48, 48), np.uint16)
    image[10:22, 10:22] = 1000
    tifffile.imwrite(tmp_path / "cells.tif", image)
    command = ["segment", str(tmp_path / "cells.tif"), "-o", str(tmp_path / "out"), "--diameter", "16"]
    assert main(command) == 0
    piped = capsys.readouterr()
    assert "\r" not in piped.err and "all files" not in piped.err  # a log gets lines, not bars
    assert piped.err.splitlines()[0] == "model nuclei on cpu; 1 input(s)"
    assert piped.out.startswith(f"{tmp_path / 'out' / 'cells.tif'}: 1 objects")

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main([*command, "--overwrite"]) == 0
    drawn = terminal.getvalue()
    assert "all files: 100%" in drawn and "1/1" in drawn  # the overall bar, finished
    assert "cells.tif:" in drawn and "\r" in drawn  # the file's own bar, redrawn in place
    assert "model nuclei on cpu; 1 input(s)" in drawn


def test_wrong_axes_and_missing_inputs_are_one_line_errors(
    nuclei_val: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image = sorted((nuclei_val / "images").glob("*.tif"))[0]
    assert main(["segment", str(image), "-o", str(tmp_path), "--axes", "ZYX"]) == 1
    err = capsys.readouterr().err
    assert image.name in err and "do not match" in err
    assert main(["segment", str(tmp_path / "nope.tif"), "-o", str(tmp_path)]) == 2
    assert "nope.tif: no such file or folder" in capsys.readouterr().err
    assert main(["segment", str(image), "-o", str(tmp_path), "--model", "nonexistent"]) == 2
    assert "no such model" in capsys.readouterr().err


def drifting_discs(planes: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    stack = rng.integers(80, 120, (planes, 64, 64)).astype(np.uint16)
    for cy, cx in rng.uniform(12, 52, (5, 2)):
        for z in range(planes):
            stack[z][(yy - cy - 0.7 * z) ** 2 + (xx - cx) ** 2 < 64] += 900
    return stack


SEGMENT_OPTIONS = ["--stitch", "--device", "cpu", "--diameter", "16"]  # a given size: no estimate, faster


@pytest.fixture(scope="module")
def three_stacks(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Three 8-plane stacks and their labels from an uninterrupted run."""
    folder = tmp_path_factory.mktemp("stacks")
    for seed in range(3):
        tifffile.imwrite(folder / f"s{seed}.tif", drifting_discs(8, seed), photometric="minisblack")
    reference = tmp_path_factory.mktemp("reference")
    assert main(["segment", str(folder), "-o", str(reference), *SEGMENT_OPTIONS]) == 0
    return folder, reference


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_segment_killed_mid_file_resumes_to_the_uninterrupted_result(
    three_stacks: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture, stop: signal.Signals
) -> None:
    folder, reference = three_stacks
    for attempt in range(3):
        # the stacks take well under a second: on a loaded machine the child may finish between
        # seeing the second stack's temporary file and the signal; then try again afresh
        out = tmp_path / f"out{attempt}"
        command = ["segment", str(folder), "-o", str(out), *SEGMENT_OPTIONS]
        process = subprocess.Popen(
            [sys.executable, "-m", "napari_unet.cli", *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NAPARI_UNET_THREADS": "1"},
            # a foreground command gets Ctrl-C; a test run in the background inherits SIGINT ignored
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if (out / "s0.tif").exists() and list(out.glob(".s1.tif.*.part")):
                break  # the second stack is being written
            time.sleep(0.01)
        process.send_signal(stop)
        _, err = process.communicate(timeout=60)
        if process.returncode != 0:
            break
    assert process.returncode != 0, "finished before it could be interrupted, three times"
    left = sorted(p.name for p in out.iterdir())
    if stop == signal.SIGINT:  # Ctrl-C: cleaned up and said so
        assert process.returncode == 130 and "interrupted" in err and "Traceback" not in err
        assert left == ["s0.tif"]
    else:  # kill -9: only the temporary file of the second stack stays, under a hidden name
        assert process.returncode == -signal.SIGKILL
        assert len(left) == 2 and left[0].startswith(".s1.tif.") and left[0].endswith(".part")
        assert left[1] == "s0.tif"

    assert main(command) == 0
    assert "skipped" in capsys.readouterr().err  # s0
    assert sorted(p.name for p in out.iterdir()) == ["s0.tif", "s1.tif", "s2.tif"]
    for name in ("s0.tif", "s1.tif", "s2.tif"):
        np.testing.assert_array_equal(tifffile.imread(out / name), tifffile.imread(reference / name))


def test_models_lists_bundled_models(capsys: pytest.CaptureFixture) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("nuclei", "phase-cells", "em-membranes"):
        assert name in out
    assert "[missing]" not in out


def _tiny_model(name: str = "tiny"):  # noqa: ANN202 - a ModelBundle
    import torch

    from napari_unet.core.config import ModelConfig, PostprocessConfig, PreprocessConfig
    from napari_unet.core.models.files import ModelBundle
    from napari_unet.core.models.network import UNet

    torch.manual_seed(0)
    network = UNet(ModelConfig(base_width=4, depth=2)).eval()
    return ModelBundle(network, PreprocessConfig(object_diameter=12.0), PostprocessConfig(), name=name)


def test_models_subcommands_manage_the_store(capsys: pytest.CaptureFixture, private_model_dir: Path) -> None:
    from napari_unet.core.models.store import save_version

    first = save_version(_tiny_model())
    tuned = _tiny_model()
    tuned.provenance = {"parent": first.name, "parent_hash": "0123456789abcdef"}
    second = save_version(tuned)
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    rows = {line.split()[0]: line for line in listing.splitlines()}
    assert " current version of tiny " in rows["tiny-v2"]
    assert " older version of tiny (current: tiny-v2) " in rows["tiny-v1"]

    assert main(["models", "info", "tiny-v2"]) == 0
    info = capsys.readouterr().out
    assert f"weights hash: {tuned.weights_hash()}" in info and "parent:       tiny-v1" in info

    assert main(["models", "rollback", "tiny-v1"]) == 0
    assert "restored tiny-v1 as tiny-v3" in capsys.readouterr().out
    assert main(["models", "rename", "tiny-v3", "mine"]) == 0
    assert main(["models", "delete", str(second.name)]) == 0
    assert sorted(p.stem for p in private_model_dir.glob("*.pt")) == ["mine", "tiny-v1"]
    capsys.readouterr()

    assert main(["models", "delete", "nuclei"]) == 2
    assert main(["models", "rename", "mine", "../x"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "bundled model" in errors[0] and "not a valid model name" in errors[1]


def test_export_writes_a_package_that_segment_and_import_accept(
    tmp_path: Path, capsys: pytest.CaptureFixture, private_model_dir: Path
) -> None:
    from napari_unet.core.models.files import save_model

    save_model(_tiny_model(), private_model_dir / "tiny.pt")
    package = tmp_path / "tiny.zip"
    assert main(["export", "tiny", "-o", str(package), "--author", "A. Person", "--license", "MIT"]) == 0
    assert f"wrote {package}" in capsys.readouterr().out

    image = np.random.default_rng(0).integers(0, 255, (40, 56), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "plane.tif", image)
    assert (
        main(["segment", str(tmp_path / "plane.tif"), "-o", str(tmp_path / "out"), "--model", str(package)])
        == 0
    )
    assert tifffile.imread(tmp_path / "out" / "plane.tif").shape == image.shape

    assert main(["models", "import", str(package)]) == 0
    assert (private_model_dir / "tiny-v1.pt").is_file()

    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((3, 32, 32), np.uint8), photometric="minisblack")
    assert (
        main(["export", "tiny", "-o", str(tmp_path / "x.zip"), "--image", str(tmp_path / "stack.tif")]) == 2
    )
    assert "must be one 2-D plane" in capsys.readouterr().err
    assert not (tmp_path / "x.zip").exists()


def test_evaluate_prints_design_metrics_as_json(
    nuclei_val: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
        for path in sorted((nuclei_val / sub).glob("*.tif"))[:3]:
            shutil.copy(path, tmp_path / sub / path.name)
    assert (
        main(
            ["evaluate", "--images", str(tmp_path / "images"), "--labels", str(tmp_path / "labels"), "--json"]
        )
        == 0
    )
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["images"] == 3
    assert 0.5 < metrics["ap50"] <= 1.0
    assert 0 <= metrics["adapted_rand_error"] < 0.5


def test_post_processing_options_reach_the_labels_and_the_provenance(
    real_inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image = sorted(p for p in real_inputs.glob("*.tif") if p.stat().st_size > 5000)[0]
    counts = {}
    strict = [
        "--probability",
        "0.9",
        "--min-size",
        "150",
        "--join-threshold",
        "0.6",
        "--object-probability",
        "0.8",
        "--augment",
    ]
    for name, options in (("default", []), ("strict", strict)):
        out = tmp_path / name
        assert main(["segment", str(image), "-o", str(out), *options]) == 0
        with tifffile.TiffFile(out / image.name) as tiff:
            provenance = json.loads(tiff.pages[0].description)
            counts[name] = int(tiff.asarray().max())
        if name == "strict":
            assert provenance["postprocess"]["foreground_threshold"] == 0.9
            assert provenance["postprocess"]["min_size"] == 150
            assert provenance["postprocess"]["join_threshold"] == 0.6
            assert provenance["postprocess"]["object_probability"] == 0.8
            assert provenance["inference"]["augment"] is True
    assert 0 < counts["strict"] < counts["default"]

    capsys.readouterr()
    assert main(["segment", str(image), "-o", str(tmp_path / "bad"), "--seed-threshold", "1.5"]) == 2
    error = capsys.readouterr().err.strip()
    assert (
        error.startswith("napari-unet: error:")
        and "--seed-threshold must be in (0, 1)" in error
        and "\n" not in error
    )
    assert main(["segment", str(image), "-o", str(tmp_path / "bad"), "--join-threshold", "0"]) == 2
    assert "--join-threshold must be in (0, 1]" in capsys.readouterr().err
    assert main(["segment", str(image), "-o", str(tmp_path / "bad"), "--object-probability", "1"]) == 2
    assert "--object-probability must be in [0, 1)" in capsys.readouterr().err


def labelled_squares(folder: Path, seed: int, squares: int = 1) -> tuple[Path, Path]:
    """``images/a.tif`` (bright squares on noise) and ``labels/a.tif`` in ``folder``: a tiny training set."""
    images, labels = folder / "images", folder / "labels"
    images.mkdir()
    labels.mkdir()
    truth = np.zeros((64, 64), np.uint16)
    truth[10:30, 10:30] = 1
    if squares == 2:
        truth[36:56, 30:50] = 2
    noise = np.random.default_rng(seed).integers(0, 100, truth.shape)
    tifffile.imwrite(images / "a.tif", ((truth > 0) * 1000 + noise).astype(np.uint16))
    tifffile.imwrite(labels / "a.tif", truth)
    return images, labels


def test_train_model_diameter_is_the_new_models_object_size(tmp_path: Path) -> None:
    """``train --model-diameter`` sets the size a new model works at; ``--diameter`` is segment's and evaluate's."""
    from napari_unet.core.models.registry import load_model

    images, labels = labelled_squares(tmp_path, seed=0, squares=2)
    model = tmp_path / "model.pt"
    options = ["--images", str(images), "--labels", str(labels), "-o", str(model), "--steps", "1"]
    small = ["--batch-size", "1", "--crop-size", "32", "--base-width", "4", "--depth", "2", "--device", "cpu"]
    assert main(["train", *options, *small, "--no-amp", "--model-diameter", "30"]) == 0
    assert load_model(model).preprocess.object_diameter == 30.0
    with pytest.raises(SystemExit) as refused:
        main(["train", *options, *small, "--diameter", "30"])
    assert refused.value.code == 2


def test_train_from_a_model_refuses_the_options_that_shape_a_new_model(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``--from`` keeps the parent's architecture and working size: ``--model-diameter`` with it is an error, not ignored."""
    images, labels = labelled_squares(tmp_path, seed=0, squares=2)
    child = tmp_path / "child.pt"
    options = ["--images", str(images), "--labels", str(labels), "-o", str(child), "--from", "nuclei"]
    assert main(["train", *options, "--model-diameter", "48", "--no-rescale"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert "--model-diameter, --no-rescale: for new models only; --from nuclei keeps" in error[0]
    assert not child.exists()


def test_train_from_a_model_fine_tunes_with_the_preset_and_records_the_data(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """``train --from`` starts from the model, with :data:`FROM_MODEL_PRESET`'s settings unless told otherwise."""
    from napari_unet.core.models.registry import load_model
    from napari_unet.core.training.folders import FROM_MODEL_PRESET

    images, labels = labelled_squares(tmp_path, seed=1)
    data = ["--images", str(images), "--labels", str(labels), "--batch-size", "1", "--crop-size", "32"]
    small = [*data, "--steps", "1", "--base-width", "4", "--depth", "2", "--device", "cpu", "--no-amp"]
    assert main(["train", *small, "-o", str(tmp_path / "parent.pt")]) == 0
    child = tmp_path / "child.pt"
    assert (
        main(["train", *data, "--steps", "2", "--from", str(tmp_path / "parent.pt"), "-o", str(child)]) == 0
    )
    tuned, parent = load_model(child), load_model(tmp_path / "parent.pt")
    training = tuned.provenance["training"]
    assert training["learning_rate"] == FROM_MODEL_PRESET.learning_rate and training["freeze_norm"] is True
    assert training["steps"] == 2 and training["amp"] is True
    assert (
        tuned.provenance["parent"] == parent.name and tuned.provenance["parent_hash"] == parent.weights_hash()
    )
    assert tuned.provenance["data"] == {"images": str(images), "labels": str(labels), "pattern": "*"}
    assert tuned.provenance["command"].startswith("napari-unet ")
    record = tuned.provenance["held_out_validation"]
    assert record["shared"] and record["objects"] == 1  # one labelled object: scored on what it trained on
    printed = capsys.readouterr().out
    assert f"held-out labels: AP@0.5 {record['parent']['ap50']:.2f} → {record['kept']['ap50']:.2f}" in printed
    assert ("not better than" in printed) != record["better"]


def test_train_resumes_from_its_checkpoint_and_removes_it_once_saved(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """A killed ``train`` run leaves ``OUTPUT.checkpoint``; the same command resumes from it."""
    from napari_unet.cli import checkpoint_path
    from napari_unet.core.models.registry import load_model

    images, labels = labelled_squares(tmp_path, seed=2)
    model = tmp_path / "model.pt"
    command = [
        "train",
        "--images",
        str(images),
        "--labels",
        str(labels),
        "-o",
        str(model),
        "--batch-size",
        "1",
    ]
    command += ["--crop-size", "32", "--base-width", "4", "--depth", "2", "--device", "cpu", "--no-amp"]
    assert main([*command, "--steps", "4", "--checkpoint-every", "2", "-o", str(tmp_path / "first.pt")]) == 0
    assert not checkpoint_path(tmp_path / "first.pt").exists()  # a finished run leaves no checkpoint behind

    # a run killed after step 2 leaves its checkpoint: resume it with the same command
    from napari_unet.core.training import loop

    calls = {"saved": 0}
    original = loop.save_checkpoint

    def save_then_die(path, state):  # noqa: ANN001, ANN202
        original(path, state)
        calls["saved"] += 1
        raise KeyboardInterrupt

    loop.save_checkpoint = save_then_die
    try:
        assert main([*command, "--steps", "4", "--checkpoint-every", "2"]) == 130
    finally:
        loop.save_checkpoint = original
    assert calls["saved"] == 1 and checkpoint_path(model).exists() and not model.exists()
    capsys.readouterr()
    assert main([*command, "--steps", "4", "--checkpoint-every", "2"]) == 0
    assert f"resumed at step 2 from {checkpoint_path(model)}" in capsys.readouterr().err
    assert load_model(model).provenance["training"]["steps"] == 4 and not checkpoint_path(model).exists()
    uninterrupted = load_model(tmp_path / "first.pt").network.state_dict()
    for name, value in load_model(model).network.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), uninterrupted[name].numpy(), err_msg=name)

    # other settings: refused, naming the checkpoint and the difference
    calls["saved"] = 0
    loop.save_checkpoint = save_then_die
    try:
        main([*command, "--steps", "4", "--checkpoint-every", "2"])
    finally:
        loop.save_checkpoint = original
    assert main([*command, "--steps", "6", "--checkpoint-every", "2"]) == 2
    error = capsys.readouterr().err
    assert (
        f"{checkpoint_path(model)}: checkpoint of a run with other settings (steps 4 in the checkpoint, 6 now"
        in error
    )


def test_train_help_states_the_presets(
    capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from napari_unet.core.training.folders import FROM_MODEL_PRESET, SCRATCH_PRESET

    monkeypatch.setenv("COLUMNS", "200")  # no line breaks inside the help texts
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    steps = re.search(r"optimiser steps \(default (\d+) from scratch, (\d+) fine-tuning\)", text)
    rates = re.search(r"peak learning rate \(default (\S+), (\S+) fine-tuning\)", text)
    assert steps is not None and rates is not None
    assert (int(steps[1]), int(steps[2])) == (SCRATCH_PRESET.steps, FROM_MODEL_PRESET.steps)
    assert (float(rates[1]), float(rates[2])) == (
        SCRATCH_PRESET.learning_rate,
        FROM_MODEL_PRESET.learning_rate,
    )


@pytest.mark.parametrize("model", ["nuclei", "phase-cells", "em-membranes"])
def test_segment_a_blank_image_finds_no_objects_and_says_so(
    model: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    image = tmp_path / "blank.tif"
    tifffile.imwrite(image, np.zeros((300, 300), np.uint8))
    assert main(["segment", str(image), "-o", str(tmp_path / "out"), "--model", model]) == 0
    assert not tifffile.imread(tmp_path / "out" / "blank.tif").any()
    captured = capsys.readouterr()
    assert "blank.tif: 0 objects" in captured.out
    assert f"napari-unet: notice: {image}: The image is blank (constant): no objects." in captured.err
