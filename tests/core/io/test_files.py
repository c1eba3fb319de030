from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from napari_unet.core.io.atomic import atomic_path, remove_stale_parts
from napari_unet.core.io.files import InputError, find_inputs, output_path


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
