"""Shared fixtures: real data from ../shared/data, small models, a private model folder."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("NAPARI_UNET_DATA", REPO.parent / "shared" / "data"))

# Two cores are shared with the GUI thread and the test runner itself.
torch.set_num_threads(min(2, torch.get_num_threads()))


def _data_folder(name: str) -> Path:
    """A split of the shared real data; the test is skipped, saying where it looked, when it is absent."""
    folder = DATA / name
    if not (folder / "images").is_dir():
        pytest.skip(f"needs the real data {name} (not found at {folder}; set NAPARI_UNET_DATA to its folder)")
    return folder


@pytest.fixture(scope="session")
def data_folder() -> Callable[[str], Path]:
    """Find a split of the shared real data, e.g. ``nuclei-dsb2018/val``; skips the test if absent."""
    return _data_folder


@pytest.fixture(autouse=True)
def private_model_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty user model folder, never the real one."""
    folder = tmp_path_factory.mktemp("models")
    monkeypatch.setenv("NAPARI_UNET_MODEL_DIR", str(folder))
    return folder


@pytest.fixture(scope="session")
def nuclei_val() -> Path:
    return _data_folder("nuclei-dsb2018/val")
