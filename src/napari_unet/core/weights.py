"""Model files: save and load, bundled models, the user's model folder, device choice.

A model file is a ``torch.save`` of a plain dictionary of strings, numbers,
lists and tensors, so it loads with ``torch.load(..., weights_only=True)``:
loading never executes code from the file.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from napari_unet.core.config import (
    ModelConfig,
    PostprocessConfig,
    PreprocessConfig,
    from_dict,
    to_dict,
)
from napari_unet.core.io import atomic_path
from napari_unet.core.model import UNet

FORMAT = "napari-unet-model"
FORMAT_VERSION = 1
BUNDLED_MODELS = ("nuclei", "phase-cells", "em-membranes")
DEFAULT_MODEL = "nuclei"
MODEL_SUFFIX = ".pt"
USER_MODEL_DIR_ENV = "NAPARI_UNET_MODEL_DIR"


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


def save_model(bundle: ModelBundle, path: str | os.PathLike[str]) -> Path:
    """Write ``bundle`` to ``path`` atomically (temporary file, then rename).

    Returns
    -------
    Path
        The written file.

    """
    path = Path(path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": bundle.name,
        "model": to_dict(bundle.config),
        "preprocess": to_dict(bundle.preprocess),
        "postprocess": to_dict(bundle.postprocess),
        "provenance": bundle.provenance,
        "state_dict": {k: v.detach().cpu() for k, v in bundle.network.state_dict().items()},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_model(path: str | os.PathLike[str]) -> ModelBundle:
    """Load a model file without executing any code stored in it.

    Raises
    ------
    ModelFileError
        If the file is missing, truncated or corrupt, holds code or objects
        other than plain data, has an unknown format version, or its weights
        do not fit its architecture.

    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else "unsafe content"
        raise ModelFileError(
            f"{path}: refused to load: the file holds objects other than plain data ({first_line})"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise ModelFileError(f"{path}: not a readable model file (truncated or corrupt: {error})") from None
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
    network = UNet(model_config)
    try:
        network.load_state_dict(payload["state_dict"], strict=True)
    except (KeyError, RuntimeError) as error:
        reason = str(error).strip().splitlines()[0]
        raise ModelFileError(
            f"{path}: weights do not match the architecture in the file ({reason})"
        ) from None
    network.eval()
    return ModelBundle(
        network=network,
        preprocess=preprocess,
        postprocess=postprocess,
        name=str(payload.get("name", path.stem)),
        provenance=dict(payload.get("provenance", {})),
        source=str(path),
    )


def bundled_model_path(name: str) -> Path:
    """Path of a bundled model file (inside the installed package)."""
    return Path(str(resources.files("napari_unet") / "weights" / f"{name}{MODEL_SUFFIX}"))


def user_model_dir() -> Path:
    """Folder of the user's own models: ``$NAPARI_UNET_MODEL_DIR`` or the platform's data folder."""
    override = os.environ.get(USER_MODEL_DIR_ENV)
    if override:
        return Path(override)
    from platformdirs import user_data_path

    return user_data_path("napari-unet", appauthor=False) / "models"


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


def choose_device(name: str = "auto") -> torch.device:
    """Turn a device name into a :class:`torch.device` that exists here.

    ``auto`` prefers CUDA, then Apple MPS, then the CPU.

    Raises
    ------
    ValueError
        For an unknown name or a device this machine does not have.

    """
    name = name.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("device 'mps' requested but Apple MPS is not available")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
        return device
    raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")


__all__ = [
    "BUNDLED_MODELS",
    "DEFAULT_MODEL",
    "ModelBundle",
    "ModelFileError",
    "bundled_model_path",
    "choose_device",
    "load_model",
    "resolve_model",
    "save_model",
    "user_model_dir",
    "user_models",
]
