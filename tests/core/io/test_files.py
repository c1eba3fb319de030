from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from napari_unet.core.io.atomic import atomic_path, remove_stale_parts
from napari_unet.core.io.files import (
    OUTLINE_COLOUR,
    InputError,
    check_pixels,
    find_inputs,
    output_path,
    user_data_folder,
    write_overlay,
)


def dead_pid() -> int:
    """The id of a process that has exited."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_atomic_path_renames_on_success_and_removes_on_error(tmp_path: Path) -> None:
    target = tmp_path / "out" / "a.tif"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"data")
        assert tmp.parent == target.parent and tmp.name.startswith(".a.tif.") and tmp.suffix == ".part"
        assert not target.exists()
    assert target.read_bytes() == b"data"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError
    assert target.read_bytes() == b"data"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.tif"]


def test_stale_parts_of_dead_writers_are_removed_live_ones_kept(tmp_path: Path) -> None:
    target = tmp_path / "a.tif"
    with atomic_path(target) as live:
        live.write_bytes(b"being written")
        # a writer of the same file that was killed (kill -9 leaves its temporary file)
        prefix = live.name.split("-", 1)[0]  # ".a.tif.<host>"
        dead = tmp_path / f"{prefix}-{dead_pid()}.x1y2z3.part"
        dead.write_bytes(b"half")
        other = tmp_path / f".b.tif.{prefix.rsplit('.', 1)[-1]}-{dead_pid()}.abc.part"
        other.write_bytes(b"another file's")
        elsewhere = tmp_path / f".a.tif.otherhost-{dead_pid()}.abc.part"
        elsewhere.write_bytes(b"a writer on another machine")
        assert remove_stale_parts(target) == [dead]
        assert live.exists() and other.exists() and elsewhere.exists() and not dead.exists()


def test_find_inputs_expands_folders_and_keeps_named_files(tmp_path: Path) -> None:
    for name in ("b.tif", "a.TIFF", "c.png", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.tif").write_bytes(b"")
    assert find_inputs([tmp_path]) == [tmp_path / "a.TIFF", tmp_path / "b.tif"]
    assert find_inputs([tmp_path], pattern="b*") == [tmp_path / "b.tif"]
    assert find_inputs([tmp_path / "c.png"]) == [tmp_path / "c.png"]
    with pytest.raises(InputError, match="nope.tif: no such file or folder"):
        find_inputs([tmp_path / "nope.tif"])


def test_output_path_drops_tiff_and_ome_suffixes(tmp_path: Path) -> None:
    assert output_path("x/cells.ome.tiff", tmp_path) == tmp_path / "cells.tif"
    assert output_path("x/cells.TIF", tmp_path) == tmp_path / "cells.tif"
    assert output_path("x/cells.v2.tif", tmp_path) == tmp_path / "cells.v2.tif"


def test_overlay_outlines_objects_in_yellow_over_the_grey_image(tmp_path: Path) -> None:
    plane = np.zeros((40, 60), np.uint16)
    plane[10:30, 10:30] = 1000
    labels = (plane > 0).astype(np.int32)
    png = iio.imread(write_overlay(tmp_path / "o.png", plane, labels), extension=".png")
    assert png.shape == (40, 60, 3) and png.dtype == np.uint8
    assert tuple(png[10, 20]) == OUTLINE_COLOUR and tuple(png[29, 20]) == OUTLINE_COLOUR  # the outline
    assert tuple(png[20, 20]) == (255, 255, 255) and tuple(png[5, 5]) == (0, 0, 0)  # inside, background
    assert not list(tmp_path.glob("*.part"))


def test_overlay_beside_the_plain_image_shrunk_to_a_height(tmp_path: Path) -> None:
    plane = np.zeros((2, 80, 60), np.float32)  # channels are averaged
    plane[1, 20:60, 20:40] = 5.0
    labels = (plane[1] > 0).astype(np.int32)
    png = iio.imread(write_overlay(tmp_path / "c.png", plane, labels, beside=True), extension=".png")
    assert png.shape == (80, 120, 3)
    left, right = png[:, :60], png[:, 60:]
    assert (left[..., 0] == left[..., 2]).all()  # grey: no outline on the left
    assert tuple(right[20, 30]) == OUTLINE_COLOUR
    small = iio.imread(
        write_overlay(tmp_path / "s.png", plane, labels, beside=True, max_height=40), extension=".png"
    )
    assert small.shape == (40, 60, 3)


@pytest.mark.parametrize("dtype", ["complex64", "U3", "datetime64[s]", "object"])
def test_check_pixels_refuses_other_pixel_types_naming_the_file(dtype: str) -> None:
    with pytest.raises(
        InputError,
        match=rf"^a\.tif: unsupported pixel type {re.escape(str(np.dtype(dtype)))}: images must hold",
    ):
        check_pixels(np.zeros((4, 4), dtype), "a.tif")
    for fine in (bool, np.uint8, np.int64, np.float16):
        check_pixels(np.zeros((4, 4), fine), "b.tif")


def test_user_data_folder_follows_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NAPARI_UNET_TEST_FOLDER", str(tmp_path / "here"))
    assert user_data_folder("things", "NAPARI_UNET_TEST_FOLDER") == tmp_path / "here"
    monkeypatch.delenv("NAPARI_UNET_TEST_FOLDER")
    default = user_data_folder("things", "NAPARI_UNET_TEST_FOLDER")
    assert default.is_absolute() and default.name == "things" and "napari-unet" in default.parent.parts
