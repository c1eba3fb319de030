"""Versions of the user's models: ``<name>-v<N>.pt`` files in the user model folder.

Fine-tuning never overwrites a model: each result is saved as the next version
of its family (``nuclei`` -> ``nuclei-v1`` -> ``nuclei-v2`` ...) in
:func:`~napari_unet.core.weights.user_model_dir` (never the current directory),
with its parent recorded in the provenance so any version can be rolled back to.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from napari_unet.core.weights import MODEL_SUFFIX, ModelBundle, save_model, user_model_dir

_VERSION = re.compile(r"^(?P<family>.+)-v(?P<number>\d+)$")


@dataclass(frozen=True)
class ModelVersion:
    """One saved version of a model family.

    Attributes
    ----------
    name : str
        ``<family>-v<number>``; what :func:`~napari_unet.core.weights.resolve_model` accepts.
    family : str
        The name without its version suffix (e.g. ``nuclei``).
    number : int
        Version number, from 1.
    path : Path
        The model file.

    """

    name: str
    family: str
    number: int
    path: Path


def family_of(name: str) -> str:
    """The model family of a name: ``"nuclei-v3"`` -> ``"nuclei"``, ``"nuclei"`` -> ``"nuclei"``."""
    match = _VERSION.match(name)
    return match["family"] if match else name


def list_versions(family: str | None = None, folder: Path | None = None) -> list[ModelVersion]:
    """Saved versions in the user model folder, oldest first.

    Parameters
    ----------
    family : str, optional
        Only versions of this family (a versioned name is reduced to its family).
    folder : Path, optional
        Defaults to :func:`~napari_unet.core.weights.user_model_dir`.

    """
    folder = user_model_dir() if folder is None else Path(folder)
    if not folder.is_dir():
        return []
    wanted = family_of(family) if family is not None else None
    versions = []
    for path in folder.glob(f"*{MODEL_SUFFIX}"):
        match = _VERSION.match(path.stem)
        if match and not path.name.startswith(".") and wanted in (None, match["family"]):
            versions.append(ModelVersion(path.stem, match["family"], int(match["number"]), path))
    return sorted(versions, key=lambda v: (v.family, v.number))


def save_version(bundle: ModelBundle, family: str | None = None, folder: Path | None = None) -> ModelVersion:
    """Save ``bundle`` as the next version of its family; never overwrites a file.

    The bundle's ``name`` and ``source`` are updated to the saved version, and
    its provenance records the parent (the name and file the bundle came from,
    unless the training loop already recorded them).

    Parameters
    ----------
    bundle : ModelBundle
        The model to save (typically the result of fine-tuning).
    family : str, optional
        Family to add a version to; defaults to the family of ``bundle.name``.
    folder : Path, optional
        Defaults to :func:`~napari_unet.core.weights.user_model_dir`.

    Returns
    -------
    ModelVersion
        The version written.

    """
    folder = user_model_dir() if folder is None else Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    family = family_of(family or bundle.name)
    parent_name = bundle.provenance.get("parent", bundle.name)
    parent_source = bundle.provenance.get("parent_source", bundle.source)
    existing = list_versions(family, folder)
    number = existing[-1].number + 1 if existing else 1
    handle, tmp_name = tempfile.mkstemp(prefix=f".{family}.", suffix=".tmp", dir=folder)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        while True:
            name = f"{family}-v{number}"
            bundle.name = name
            bundle.provenance = {**bundle.provenance, "parent": parent_name, "parent_source": parent_source}
            save_model(bundle, tmp)
            final = folder / f"{name}{MODEL_SUFFIX}"
            try:
                # a hard link creates the name only if it is free, so two saves never collide
                os.link(tmp, final)
            except FileExistsError:
                number += 1
                continue
            except OSError:  # file systems without hard links
                if final.exists():
                    number += 1
                    continue
                os.replace(tmp, final)
            break
    finally:
        tmp.unlink(missing_ok=True)
    bundle.source = str(final)
    return ModelVersion(name, family, number, final)


def parent_of(bundle: ModelBundle) -> str | None:
    """Name or path of the model ``bundle`` was fine-tuned from, if it still exists."""
    source = bundle.provenance.get("parent_source")
    if source and Path(source).is_file():
        return str(source)
    parent = bundle.provenance.get("parent")
    return str(parent) if parent else None


__all__ = ["ModelVersion", "family_of", "list_versions", "parent_of", "save_version"]
