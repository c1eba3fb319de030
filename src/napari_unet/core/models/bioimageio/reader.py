"""Read a bioimage.io model package (zip) as a napari-unet model, running nothing from it."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

from napari_unet.core.models.files import (
    FORMAT,
    ModelBundle,
    ModelFileError,
    bundle_from_payload,
    load_plain_data,
)

MAX_WEIGHTS_BYTES = 2**31
"""Largest weights file read from a package (a 4-level U-Net of width 64 is ~125 MB)."""


def _read_member(archive: zipfile.ZipFile, name: str, path: Path) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ModelFileError(f"{path}: the package lacks {name}, which its description names") from None
    if info.file_size > MAX_WEIGHTS_BYTES:
        raise ModelFileError(f"{path}: {name} is {info.file_size} bytes, too large for a U-Net's weights")
    return archive.read(info)


def load_package(path: str | os.PathLike[str]) -> ModelBundle:
    """Load a bioimage.io model package (zip) as a :class:`ModelBundle`, running nothing from it.

    Supported: packages with ``pytorch_state_dict`` weights of napari-unet's
    U-Net (napari-unet's own exports).  The state dict is loaded with
    ``torch.load(weights_only=True)`` into napari-unet's installed
    :class:`~napari_unet.core.models.network.UNet`; its SHA-256 must match the
    description's, and its weights hash the one recorded at export.

    Raises
    ------
    ModelFileError
        With one line saying why a package cannot be used (corrupt, unsafe
        content, TorchScript only, another architecture, mismatched hashes).

    """
    import yaml

    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            rdf_name = "rdf.yaml" if "rdf.yaml" in names else "bioimageio.yaml"
            description = yaml.safe_load(archive.read(rdf_name))
            if not isinstance(description, dict) or description.get("type") != "model":
                raise ModelFileError(f"{path}: not a bioimage.io model package")
            weights = description.get("weights") or {}
            entry = weights.get("pytorch_state_dict") if isinstance(weights, dict) else None
            if not isinstance(entry, dict):
                formats = ", ".join(sorted(weights)) if isinstance(weights, dict) else "none"
                raise ModelFileError(
                    f"{path}: napari-unet loads only pytorch_state_dict weights (this package has: {formats}); "
                    "TorchScript archives are programs and are not run"
                )
            source = str(entry.get("source", ""))
            data = _read_member(archive, source, path)
    except (zipfile.BadZipFile, OSError, yaml.YAMLError) as error:
        raise ModelFileError(f"{path}: not a readable bioimage.io package ({error})") from None
    expected_sha = entry.get("sha256")
    if expected_sha and hashlib.sha256(data).hexdigest() != expected_sha:
        raise ModelFileError(
            f"{path}: {source} does not match its SHA-256 in the description (altered or corrupt)"
        )
    config_section = (description.get("config") or {}).get("napari_unet")
    architecture = entry.get("architecture") or {}
    if not isinstance(config_section, dict) or config_section.get("format") != FORMAT:
        raise ModelFileError(
            f"{path}: not a napari-unet U-Net (architecture {architecture.get('callable', 'unknown')!r} "
            f"from {architecture.get('source') or architecture.get('import_from') or 'unknown'}); "
            "napari-unet loads packages it exported"
        )
    state_dict = load_plain_data(io.BytesIO(data), f"{path}!{source}")
    # the package's config holds a model file's header (see model_header): read it as one
    return bundle_from_payload({**config_section, "state_dict": state_dict}, path)
