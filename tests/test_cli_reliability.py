"""Hostile files through ``napari-unet segment``: each bad file gets one line, never a traceback.

Most cases run the real command in a subprocess (stderr as a user sees it)
with the bundled ``nuclei`` model on small images of four nuclei-sized disks.

Permissions: tests often run as root, and root ignores ``chmod``.  As root the
command runs under ``setpriv`` without the capabilities that let root bypass
file permissions (``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``), so the
kernel really refuses with ``EACCES``; as any other user ``chmod`` alone does.
A full disk cannot be made portably, so ``ENOSPC`` is raised in-process by the
TIFF writer after it has written part of a file.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_unet import cli

ERROR = "napari-unet: error: "
DISK_CENTRES = ((20, 20), (20, 60), (44, 40), (46, 78))


def disks(value: int = 200, dtype: type = np.uint8) -> np.ndarray:
    yy, xx = np.mgrid[:64, :96]
    image = np.zeros((64, 96), dtype)
    for cy, cx in DISK_CENTRES:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= 81] = value
    return image


def run_cli(*args: str | Path, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    """``napari-unet ARGS`` in a subprocess; ``unprivileged``: file permissions apply (also to root)."""
    command = [sys.executable, "-m", "napari_unet.cli", *map(str, args)]
    if unprivileged and os.geteuid() == 0:
        drop = "-dac_override,-dac_read_search"
        command = ["setpriv", f"--bounding-set={drop}", f"--inh-caps={drop}", *command]
    env = {**os.environ, "NAPARI_UNET_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith(ERROR)]


def no_leftovers(folder: Path) -> None:
    assert not list(folder.glob(".*.part")), "temporary files left behind"


# -- what each file in one folder does ---------------------------------------------------------
@pytest.fixture(scope="module")
def hostile_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("hostile")
    image = disks()
    tifffile.imwrite(folder / "good.tif", image)
    # unreadable: each must fail alone
    (folder / "empty.tif").write_bytes(b"")
    (folder / "random.tif").write_bytes(np.random.default_rng(0).bytes(5000))
    whole = (folder / "good.tif").read_bytes()
    (folder / "truncated.tif").write_bytes(whole[: len(whole) // 2])
    noise = np.random.default_rng(1).integers(0, 255, (256, 256), dtype=np.uint8)
    tifffile.imwrite(folder / "zlib.tif", noise, compression="zlib")
    compressed = (folder / "zlib.tif").read_bytes()
    (folder / "zlib.tif").unlink()
    (folder / "truncated_zlib.tif").write_bytes(compressed[: len(compressed) * 2 // 3])
    (folder / "text.tif").write_text("not an image\n")
    Image.fromarray(image).save(folder / "png_named.tif", format="PNG")
    tifffile.imwrite(folder / "complex.tif", image.astype(np.complex64))
    # unusual but valid: each must be segmented
    tifffile.imwrite(folder / "bool.tif", image > 0)
    tifffile.imwrite(folder / "offset_int64.tif", image.astype(np.int64) + 2**40)
    tifffile.imwrite(folder / "nan_float.tif", np.where(image > 0, 1.0, 0.0).astype(np.float32))
    with tifffile.TiffFile(folder / "nan_float.tif") as tiff:
        nan_image = tiff.asarray()
    nan_image[::7, ::5] = np.where(nan_image[::7, ::5] > 0, 1.0, np.nan)
    nan_image[3, 3], nan_image[4, 4] = np.inf, -np.inf
    tifffile.imwrite(folder / "nan_float.tif", nan_image)
    blue = np.stack([np.zeros_like(image), np.zeros_like(image), image], axis=-1)
    tifffile.imwrite(folder / "rgb_blue_nuclei.tif", blue, photometric="rgb")
    tifffile.imwrite(folder / "six_d.tif", np.broadcast_to(image, (1, 2, 1, 2, 64, 96)).copy())
    tifffile.imwrite(folder / "line.tif", np.arange(50, dtype=np.uint8)[None])
    tifffile.imwrite(folder / "constant.tif", np.full((30, 30), 7, np.uint16))
    # a TIFF whose name says PNG (given explicitly: folders only list .tif/.tiff)
    tifffile.imwrite(tmp_path_factory.mktemp("explicit") / "tiff_named.png", image)
    return folder


FAILS = {
    "empty.tif": "empty file (0 bytes)",
    "random.tif": "not a TIFF",
    "text.tif": "not a TIFF",
    "png_named.tif": "not a TIFF",
    "truncated.tif": "truncated",
    "truncated_zlib.tif": "",
    "complex.tif": "unsupported pixel type complex64",
}
OBJECTS: dict[str, int | None] = {
    "good.tif": 4,
    "bool.tif": 4,
    "offset_int64.tif": 4,
    "nan_float.tif": 4,
    "rgb_blue_nuclei.tif": 4,
    "six_d.tif": 16,
    "line.tif": None,  # a ramp 1 pixel high: any count, as long as the labels have its shape
    "constant.tif": 0,
    "tiff_named.tif": 4,
}


def test_each_bad_file_gets_one_line_and_every_other_file_is_segmented(
    hostile_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    explicit = next(hostile_folder.parent.glob("explicit*/tiff_named.png"))
    proc = run_cli("segment", hostile_folder, explicit, "-o", out)
    assert proc.returncode == 1, proc.stderr
    errors = error_lines(proc.stderr)
    assert errors[-1] == f"{ERROR}{len(FAILS)} of {len(FAILS) + len(OBJECTS)} input(s) failed"
    assert len(errors) == len(FAILS) + 1
    for name, reason in FAILS.items():
        (line,) = [e for e in errors if f"{os.sep}{name}:" in e]
        assert line.startswith(f"{ERROR}{hostile_folder / name}: ") and reason in line
        assert not (out / name).exists()
    for name, objects in OBJECTS.items():
        labels = tifffile.imread(out / name)
        found = len(np.unique(labels[labels > 0]))
        assert found == (found if objects is None else objects), name
        assert f"{out / name}: {found} objects" in proc.stdout
    assert tifffile.imread(out / "line.tif").shape == (1, 50)
    six_d = tifffile.imread(out / "six_d.tif")
    assert six_d.shape == (1, 2, 1, 2, 64, 96)
    assert all((plane > 0)[c] for plane in six_d.reshape(-1, 64, 96) for c in DISK_CENTRES)
    no_leftovers(out)


# -- permissions ---------------------------------------------------------------------------------
def test_an_unreadable_input_fails_alone(tmp_path: Path) -> None:
    folder = tmp_path
    tifffile.imwrite(folder / "locked.tif", disks())
    tifffile.imwrite(folder / "open.tif", disks())
    (folder / "locked.tif").chmod(0)
    proc = run_cli(
        "segment", folder / "locked.tif", folder / "open.tif", "-o", folder / "out", unprivileged=True
    )
    assert proc.returncode == 1, proc.stderr
    errors = error_lines(proc.stderr)
    assert errors[0].startswith(f"{ERROR}{folder / 'locked.tif'}: ") and "Permission denied" in errors[0]
    assert len(errors) == 2  # and the summary
    assert tifffile.imread(folder / "out" / "open.tif").max() == 4
    assert not (folder / "out" / "locked.tif").exists()


@pytest.mark.slow
def test_an_unwritable_output_folder_is_one_line_before_any_work(tmp_path: Path) -> None:
    folder = tmp_path
    tifffile.imwrite(folder / "a.tif", disks())
    tifffile.imwrite(folder / "b.tif", disks())
    (folder / "read_only").mkdir(mode=0o555)
    (folder / "a_file").write_text("")
    for output, reason in [
        (folder / "read_only", "Permission denied"),
        (folder / "read_only" / "new", "Permission denied"),
        (folder / "a_file", "it is a file"),
    ]:
        proc = run_cli("segment", folder / "a.tif", folder / "b.tif", "-o", output, unprivileged=True)
        assert proc.returncode == 2, proc.stderr
        assert error_lines(proc.stderr) == [f"{ERROR}cannot write to the output folder {output}: {reason}"]
    assert list((folder / "read_only").iterdir()) == []


# -- a full disk (simulated in-process) -----------------------------------------------------------
def test_a_full_disk_leaves_no_partial_output_and_a_rerun_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(tmp_path / name, disks())
    out = tmp_path / "out"
    real_write = tifffile.TiffWriter.write
    partial: list[int] = []

    def write_until_full(self: tifffile.TiffWriter, *args: object, **kwargs: object) -> None:
        self._fh.write(b"\0" * 4096)  # part of the page reaches the disk, then it is full
        partial.append(self._fh.tell())
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tifffile.TiffWriter, "write", write_until_full)
    status = cli.main(["segment", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "-o", str(out)])
    captured = capsys.readouterr()
    assert status == 1 and len(partial) == 2
    errors = error_lines(captured.err)
    assert errors == [
        f"{ERROR}{tmp_path / 'a.tif'}: [Errno {errno.ENOSPC}] No space left on device",
        f"{ERROR}{tmp_path / 'b.tif'}: [Errno {errno.ENOSPC}] No space left on device",
        f"{ERROR}2 of 2 input(s) failed",
    ]
    assert list(out.iterdir()) == []  # neither outputs nor their partial temporary files

    monkeypatch.setattr(tifffile.TiffWriter, "write", real_write)  # space freed: the re-run completes
    assert cli.main(["segment", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.tif", "b.tif"]
    assert tifffile.imread(out / "a.tif").max() == 4


@pytest.mark.slow
# -- outputs that exist ---------------------------------------------------------------------------
def test_existing_outputs_are_kept_redone_or_replaced_while_open(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "cells.tif", disks())
    tifffile.imwrite(tmp_path / "other.tif", disks())
    out = tmp_path / "out"
    assert run_cli("segment", tmp_path / "cells.tif", "-o", out).returncode == 0
    first = (out / "cells.tif").read_bytes()
    first_labels = tifffile.imread(out / "cells.tif")

    # complete: skipped, untouched; foreign or half-written: redone
    (out / "other.tif").write_bytes(first[: len(first) // 2])
    proc = run_cli("segment", tmp_path / "cells.tif", tmp_path / "other.tif", "-o", out)
    assert proc.returncode == 0 and error_lines(proc.stderr) == []
    assert f"skipped {tmp_path / 'cells.tif'}" in proc.stderr
    assert (out / "cells.tif").read_bytes() == first
    assert tifffile.imread(out / "other.tif").max() == 4

    # open in another program while overwritten: the reader keeps the old file, the new one is whole
    with tifffile.TiffFile(out / "cells.tif") as reader:
        # the input is now bad: --overwrite must not lose the output
        (tmp_path / "cells.tif").write_bytes(b"")
        proc = run_cli("segment", tmp_path / "cells.tif", "-o", out, "--overwrite")
        assert proc.returncode == 1 and "empty file (0 bytes)" in error_lines(proc.stderr)[0]
        assert (out / "cells.tif").read_bytes() == first
        tifffile.imwrite(tmp_path / "cells.tif", disks()[::-1])
        proc = run_cli("segment", tmp_path / "cells.tif", "-o", out, "--overwrite")
        assert proc.returncode == 0, proc.stderr
        np.testing.assert_array_equal(reader.asarray(), first_labels)  # still the old, complete file
    flipped = tifffile.imread(out / "cells.tif")
    assert flipped.max() == 4 and all(flipped[63 - cy, cx] for cy, cx in DISK_CENTRES)
    no_leftovers(out)


@pytest.mark.slow
def test_an_output_name_taken_by_a_folder_fails_that_file_only(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "cells.tif", disks())
    tifffile.imwrite(tmp_path / "other.tif", disks())
    (tmp_path / "out" / "cells.tif").mkdir(parents=True)
    proc = run_cli("segment", tmp_path / "cells.tif", tmp_path / "other.tif", "-o", tmp_path / "out")
    assert proc.returncode == 1
    errors = error_lines(proc.stderr)
    assert len(errors) == 2 and errors[0].startswith(f"{ERROR}{tmp_path / 'cells.tif'}: ")
    assert "Is a directory" in errors[0]
    assert tifffile.imread(tmp_path / "out" / "other.tif").max() == 4
    no_leftovers(tmp_path / "out")


@pytest.mark.slow
# -- other ways in ---------------------------------------------------------------------------------
def test_missing_inputs_and_bad_models_are_one_line(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "cells.tif", disks())
    (tmp_path / "model.pt").write_bytes(np.random.default_rng(0).bytes(3000))
    (tmp_path / "empty.pt").write_bytes(b"")
    cases = [
        (
            ["segment", tmp_path / "missing.tif", "-o", tmp_path / "out"],
            "missing.tif: no such file or folder",
        ),
        (
            ["segment", tmp_path / "cells.tif", "-o", tmp_path / "out", "--model", "no-such-model"],
            "no-such-model",
        ),
        (
            ["segment", tmp_path / "cells.tif", "-o", tmp_path / "out", "--model", tmp_path / "model.pt"],
            "model.pt",
        ),
        (
            ["segment", tmp_path / "cells.tif", "-o", tmp_path / "out", "--model", tmp_path / "empty.pt"],
            "empty.pt",
        ),
        (["segment", tmp_path / "cells.tif", "-o", tmp_path / "out", "--axes", "ZYX"], "do not match"),
    ]
    for args, expected in cases:
        proc = run_cli(*args)
        assert proc.returncode in (1, 2), proc.stderr
        errors = error_lines(proc.stderr)
        assert any(expected in line for line in errors), (args, proc.stderr)
        assert all(len(line) < 400 for line in errors)


def test_an_unexpected_error_is_one_line_unless_debugging(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("something nobody foresaw\nsecond line")

    monkeypatch.setattr("napari_unet.core.io.files.find_inputs", broken)
    assert cli.main(["segment", str(tmp_path), "-o", str(tmp_path / "out")]) == 3
    assert error_lines(capsys.readouterr().err) == [
        f"{ERROR}unexpected RuntimeError: something nobody foresaw (set NAPARI_UNET_DEBUG=1 for the traceback)"
    ]
    monkeypatch.setenv("NAPARI_UNET_DEBUG", "1")
    with pytest.raises(RuntimeError, match="nobody foresaw"):
        cli.main(["segment", str(tmp_path), "-o", str(tmp_path / "out")])
