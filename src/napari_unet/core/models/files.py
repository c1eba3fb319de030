"""Model files: save and load, bundled models, the user's model folder, device choice.

A model file is a ``torch.save`` of a plain dictionary of strings, numbers,
lists and tensors, so it loads with ``torch.load(..., weights_only=True)``:
loading never executes code from the file.

Importing this module does not import torch (it takes seconds): torch is
imported when a model is first read or written, so that listing and naming
models (the model registry and store, the napari widget's pickers) stays quick.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from napari_unet.core.config import (
    ModelConfig,
    PostprocessConfig,
    PreprocessConfig,
    from_dict,
    to_dict,
)
from napari_unet.core.io.atomic import atomic_path

if TYPE_CHECKING:
    from napari_unet.core.models.network import UNet

FORMAT = "napari-unet-model"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model file cannot be used; the message names the file and the reason."""


@dataclass
class ModelBundle:
    """A model in memory: the network and everything needed to use it.

    Attributes
    ----------
    network : UNet
        In evaluation mode, on the CPU unless moved.
    preprocess : PreprocessConfig
    postprocess : PostprocessConfig
        Defaults for this model; callers may override them.
    name : str
    provenance : dict
        Parent model, training data, steps, date, metrics, command.
    source : str
        Path the model was loaded from ("" if it was never saved).

    """

    network: UNet
    preprocess: PreprocessConfig
    postprocess: PostprocessConfig
    name: str = "unnamed"
    provenance: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @property
    def config(self) -> ModelConfig:
        """The network's architecture."""
        return self.network.config

    def weights_hash(self) -> str:
        """SHA-256 of the weights (hex, first 16 digits): identifies a version."""
        digest = hashlib.sha256()
        for key, tensor in sorted(self.network.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]


def model_header(bundle: ModelBundle) -> dict[str, Any]:
    """Everything a model file holds but the weights: format, name, configs, provenance, weights hash.

    :func:`bundle_from_payload` reads it back (with the weights under ``"state_dict"``);
    bioimage.io packages carry the same dictionary in their ``config``.
    """
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": bundle.name,
        "model": to_dict(bundle.config),
        "preprocess": to_dict(bundle.preprocess),
        "postprocess": to_dict(bundle.postprocess),
        "provenance": bundle.provenance,
        "weights_hash": bundle.weights_hash(),
    }


def save_model(bundle: ModelBundle, path: str | os.PathLike[str]) -> Path:
    """Write ``bundle`` to ``path`` atomically (temporary file, then rename).

    Returns
    -------
    Path
        The written file.

    """
    import torch

    path = Path(path)
    payload = {
        **model_header(bundle),
        "state_dict": {k: v.detach().cpu() for k, v in bundle.network.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_plain_data(source: str | os.PathLike[str] | IO[bytes], name: str | os.PathLike[str]) -> Any:
    """Unpickle a ``torch.save`` file that may hold only tensors and plain data.

    ``torch.load(..., weights_only=True)`` refuses every object other than
    tensors, numbers, strings, lists, tuples and dicts *before* creating it, so
    a file crafted to run code (a pickle whose ``__reduce__`` calls
    ``os.system``) is rejected and nothing in it runs.

    Parameters
    ----------
    source : path or binary file
    name : str or path
        Names the file in errors.

    Raises
    ------
    ModelFileError
        If the file holds other objects, or is truncated or corrupt.

    """
    import torch

    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's first lines advise loading with weights_only=False (running the file's code);
        # the line that says what was refused comes later
        boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        reason = next((line for line in lines if not line.startswith(boilerplate)), "unsafe content")
        if reason.startswith("Unsupported operand"):  # not a pickle at all: random or foreign bytes
            raise ModelFileError(f"{name}: not a readable model file (corrupt: {reason})") from None
        raise ModelFileError(
            f"{name}: refused to load: the file holds objects other than plain data ({reason})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFileError(f"{name}: not a readable model file (truncated or corrupt: {reason})") from None


def is_bioimageio_package(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a zip file holding a bioimage.io description (``rdf.yaml``)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool({"rdf.yaml", "bioimageio.yaml"} & set(archive.namelist()))
    except (zipfile.BadZipFile, OSError):
        return False


def bundle_from_payload(payload: Any, path: str | os.PathLike[str]) -> ModelBundle:
    """Check a loaded model-file dictionary and build the model it describes.

    Parameters
    ----------
    payload : Any
        What :func:`load_plain_data` returned.
    path : str or path
        The file it came from (named in errors, kept as the bundle's ``source``).

    Raises
    ------
    ModelFileError
        See :func:`load_model`.

    """
    path = Path(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a napari-unet model file")
    version = payload.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {version!r} is not supported "
            f"(this napari-unet reads version {FORMAT_VERSION}; upgrade napari-unet)"
        )
    try:
        model_config = from_dict(ModelConfig, dict(payload["model"]))
        preprocess = from_dict(PreprocessConfig, dict(payload["preprocess"]))
        postprocess = from_dict(PostprocessConfig, dict(payload["postprocess"]))
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFileError(f"{path}: invalid configuration in model file: {error}") from None
    provenance = payload.get("provenance", {})
    if not isinstance(provenance, dict):
        raise ModelFileError(f"{path}: invalid provenance in model file (not a dictionary)")
    bundle = ModelBundle(
        network=network_from_state_dict(model_config, payload.get("state_dict"), path),
        preprocess=preprocess,
        postprocess=postprocess,
        name=str(payload.get("name", path.stem)),
        provenance=dict(provenance),
        source=str(path),
    )
    recorded = payload.get("weights_hash")
    if recorded is not None and recorded != bundle.weights_hash():
        raise ModelFileError(
            f"{path}: the weights differ from their recorded hash {recorded} "
            f"(the file was altered or is corrupt)"
        )
    return bundle


def network_from_state_dict(config: ModelConfig, state_dict: Any, path: str | os.PathLike[str]) -> UNet:
    """A :class:`UNet` of ``config`` holding ``state_dict``, in evaluation mode.

    Raises
    ------
    ModelFileError
        If ``state_dict`` is not a dictionary of tensors whose names and
        shapes are exactly those of the architecture.

    """
    import torch

    from napari_unet.core.models.network import UNet

    if not isinstance(state_dict, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()
    ):
        raise ModelFileError(f"{path}: the weights are not a dictionary of named tensors")
    network = UNet(config)
    try:
        network.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        reason = str(error).strip().splitlines()[0]
        raise ModelFileError(
            f"{path}: weights do not match the architecture in the file ({reason})"
        ) from None
    return network.eval()


__all__ = [
    "ModelBundle",
    "ModelFileError",
    "bundle_from_payload",
    "is_bioimageio_package",
    "load_plain_data",
    "network_from_state_dict",
    "save_model",
]
