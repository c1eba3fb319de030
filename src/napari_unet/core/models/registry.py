"""Find models by name: the bundled ones, the user's own folder, a file path or a bioimage.io ``.zip``."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from napari_unet.core.io.files import user_data_folder
from napari_unet.core.models.bioimageio.reader import load_package
from napari_unet.core.models.files import (
    ModelBundle,
    ModelFileError,
    bundle_from_payload,
    is_bioimageio_package,
    load_plain_data,
)

BUNDLED_MODELS = ("nuclei", "nuclei-brightfield", "phase-cells", "em-membranes")


DEFAULT_MODEL = "nuclei"


MODEL_SUFFIX = ".pt"


USER_MODEL_DIR_ENV = "NAPARI_UNET_MODEL_DIR"


def load_model(path: str | os.PathLike[str]) -> ModelBundle:
    """Load a model file or bioimage.io package without executing any code stored in it.

    Parameters
    ----------
    path : str or path
        A napari-unet model file (``.pt``) or a bioimage.io model package
        (``.zip``, see :func:`napari_unet.core.models.bioimageio.reader.load_package`).

    Raises
    ------
    ModelFileError
        If the file is missing, truncated or corrupt, holds code or objects
        other than plain data, has an unknown format version, its weights
        do not fit its architecture or differ from their recorded hash.

    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if is_bioimageio_package(path):
        return load_package(path)
    return bundle_from_payload(load_plain_data(path, path), path)


def bundled_model_path(name: str) -> Path:
    """Path of a bundled model file (inside the installed package)."""
    return Path(str(resources.files("napari_unet") / "weights" / f"{name}{MODEL_SUFFIX}"))


def user_model_dir() -> Path:
    """Folder of the user's own models: ``$NAPARI_UNET_MODEL_DIR`` or ``models`` in the platform's data folder."""
    return user_data_folder("models", USER_MODEL_DIR_ENV)


def user_models() -> dict[str, Path]:
    """The user's saved models, name -> path."""
    folder = user_model_dir()
    if not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.glob(f"*{MODEL_SUFFIX}"))}


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """Find a model file by bundled name, user-model name or path.

    Raises
    ------
    ModelFileError
        If nothing of that name exists.

    """
    text = str(name_or_path)
    if text in BUNDLED_MODELS:
        return bundled_model_path(text)
    user = user_models()
    if text in user:
        return user[text]
    path = Path(text).expanduser()
    if path.is_file():
        return path
    known = ", ".join([*BUNDLED_MODELS, *user])
    raise ModelFileError(f"{text}: no such model (known models: {known}; or give a file path)")
