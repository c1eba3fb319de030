"""The user's model store: versions, renaming, deleting and rolling back, safe for concurrent use.

The store is the folder :func:`~napari_unet.core.models.registry.user_model_dir` (never
the current directory): one model file per model, ``<family>-v<N>.pt`` for
versions.  Fine-tuning never overwrites a model: each result is saved as the
next version of its family (``nuclei`` -> ``nuclei-v1`` -> ``nuclei-v2`` ...),
with its lineage in the provenance (see :mod:`napari_unet.core.models.lineage`).

Version numbers only grow: deleting ``nuclei-v3`` does not make the next save
``nuclei-v3`` again (the highest number given is kept in ``.versions.json``).

The newest version of a family is its *current* one.  Rolling back to an older
version saves a copy of it as the next version, so the store only ever grows
by whole files and its history stays complete (the copy records which version
it restored); deleting a version is a separate, explicit step.

Every change (save, rename, delete, roll back) holds an exclusive lock on
``.store.lock`` in the folder, so two napari windows or processes never pick
the same version number, and each file appears under its final name only when
it is completely written (temporary file, then rename).  Reading needs no
lock: a model file is either absent or complete.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from napari_unet.core.io.atomic import atomic_path, remove_stale_parts_in
from napari_unet.core.models.files import ModelBundle, ModelFileError, save_model
from napari_unet.core.models.registry import (
    BUNDLED_MODELS,
    DEFAULT_MODEL,
    MODEL_SUFFIX,
    bundled_model_path,
    load_model,
    user_model_dir,
)
from napari_unet.core.training.validation import describe as describe_validation
from napari_unet.core.training.validation import validation_of

LOCK_NAME = ".store.lock"
COUNTERS_NAME = ".versions.json"
NOT_BETTER_NAME = ".not-better.json"
"""Versions whose fine-tuning did not beat their parent on the held-out corrections: never current."""
LOCK_TIMEOUT_S = 60.0
"""Longest wait for another process's change to the store (a save takes well under a second)."""

_VERSION = re.compile(r"^(?P<family>.+)-v(?P<number>\d+)$")
_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


class StoreError(ValueError):
    """A change to the model store cannot be made; the message says why."""


@dataclass(frozen=True)
class ModelVersion:
    """One saved version of a model family.

    Attributes
    ----------
    name : str
        ``<family>-v<number>``; what :func:`~napari_unet.core.models.registry.resolve_model` accepts.
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


def _folder(folder: Path | None) -> Path:
    return user_model_dir() if folder is None else Path(folder)


@contextmanager
def store_lock(folder: Path | None = None, timeout: float = LOCK_TIMEOUT_S) -> Iterator[Path]:
    """Hold the store's exclusive lock (between processes and threads) while changing it.

    Yields
    ------
    Path
        The store folder (created if needed).

    Raises
    ------
    StoreError
        If another process holds the lock for longer than ``timeout`` seconds.

    """
    from filelock import FileLock, Timeout

    folder = _folder(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # thread_local=False: the lock is about the folder, whichever thread of this process holds it
    lock = FileLock(folder / LOCK_NAME, thread_local=False, is_singleton=False)
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise StoreError(
            f"{folder}: the model store is busy (another napari-unet holds {LOCK_NAME} "
            f"for more than {timeout:.0f} s)"
        ) from None
    try:
        remove_stale_parts_in(folder)  # versions whose writer was killed mid-file
        yield folder
    finally:
        lock.release()


def list_versions(family: str | None = None, folder: Path | None = None) -> list[ModelVersion]:
    """Saved versions in the user model folder, oldest first.

    Parameters
    ----------
    family : str, optional
        Only versions of this family (a versioned name is reduced to its family).
    folder : Path, optional
        Defaults to :func:`~napari_unet.core.models.registry.user_model_dir`.

    """
    folder = _folder(folder)
    if not folder.is_dir():
        return []
    wanted = family_of(family) if family is not None else None
    versions = []
    for path in folder.glob(f"*{MODEL_SUFFIX}"):
        match = _VERSION.match(path.stem)
        if match and not path.name.startswith(".") and wanted in (None, match["family"]):
            versions.append(ModelVersion(path.stem, match["family"], int(match["number"]), path))
    return sorted(versions, key=lambda v: (v.family, v.number))


def current_version(family: str, folder: Path | None = None) -> ModelVersion | None:
    """The current version of ``family``: its newest one that is not :func:`not_better`, or ``None``.

    A fine-tuning that scored no better than its parent on the person's held-out
    corrections is saved and can be chosen, but never becomes current by itself;
    :func:`rollback` makes it current on request.
    """
    refused = not_better(folder)
    versions = [v for v in list_versions(family, folder) if v.name not in refused]
    return versions[-1] if versions else None


def not_better(folder: Path | None = None) -> set[str]:
    """Names of the versions that did not beat their parent on the held-out corrections."""
    try:
        names = json.loads((_folder(folder) / NOT_BETTER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {str(name) for name in names} if isinstance(names, list) else set()


def _scored_worse(provenance: dict[str, Any]) -> bool:
    record = provenance.get("held_out_validation")
    # a rollback is the person's own choice: the restored copy becomes current whatever it scored
    return isinstance(record, dict) and record.get("better") is False and "restored_from" not in provenance


def model_standing(name: str, folder: Path | None = None) -> str:
    """A model's place among the models, in the words ``napari-unet models`` and the widget share.

    Parameters
    ----------
    name : str
        A bundled name or a model in the store (see :func:`list_versions`).
    folder : Path, optional
        The store; defaults to :func:`~napari_unet.core.models.registry.user_model_dir`.

    Returns
    -------
    str
        ``"current version of nuclei"`` (the newest of its family),
        ``"older version of nuclei (current: nuclei-v3)"``, or for a model
        without a version number ``"bundled"`` or ``"your model"``, followed
        by ``"; its current version is nuclei-v3"`` once it has versions.

    """
    family = family_of(name)
    newest = current_version(family, folder)
    if family == name:
        base = "bundled" if name in BUNDLED_MODELS else "your model"
        return f"{base}; its current version is {newest.name}" if newest is not None else base
    if name in not_better(folder):
        current = newest.name if newest is not None else family
        return f"version of {family} not better on your corrections (current: {current})"
    if newest is None or newest.name == name:
        return f"current version of {family}"
    return f"older version of {family} (current: {newest.name})"


def starting_model(folder: Path | None = None) -> Path:
    """The model the widget starts with: the current version of the default family, else the bundled one.

    The command line's default stays the bundled :data:`~napari_unet.core.models.registry.DEFAULT_MODEL`
    (``--model`` picks another); :func:`describe_choice` says so.
    """
    newest = current_version(DEFAULT_MODEL, folder)
    return newest.path if newest is not None else bundled_model_path(DEFAULT_MODEL)


def describe_choice(path: str | Path, folder: Path | None = None) -> str:
    """One sentence on the model in ``path``: which one and version it is, and why it differs from the CLI's.

    The model's standing is in the words of :func:`model_standing`.

    Parameters
    ----------
    path : str or Path
        A model file: bundled, in the store, or anywhere else.
    folder : Path, optional
        The store; defaults to :func:`~napari_unet.core.models.registry.user_model_dir`.

    """
    path = Path(path)
    name = path.stem
    bundled = {bundled_model_path(n).resolve(): n for n in BUNDLED_MODELS}
    if path.resolve() in bundled:
        name = bundled[path.resolve()]
    elif path.suffix != MODEL_SUFFIX or path.parent.resolve() != _folder(folder).resolve():
        return f"Uses {name}, a model file ({path})."
    standing = model_standing(name, folder)
    if standing == "bundled":
        return f"Uses {name}, bundled (no fine-tuned version of it yet)."
    family = family_of(name)
    if standing == f"current version of {family}":
        original = f"the bundled {family}" if family in BUNDLED_MODELS else family
        return (
            f"Uses {name}, the {standing} (your newest fine-tuning of it). "
            f"napari-unet segment uses {original} unless given --model {name}."
        )
    return f"Uses {name}, {standing}."


def _read_counters(folder: Path) -> dict[str, int]:
    try:
        counters = json.loads((folder / COUNTERS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(counters, dict):
        return {}
    return {str(k): v for k, v in counters.items() if isinstance(v, int)}


def _next_version(family: str, folder: Path) -> tuple[str, Path]:
    # called with the lock held: nobody else can take this number before the file exists.
    # The highest number ever given is remembered, so a deleted version's name is never
    # reused for other weights (lineage refers to models by name and hash).
    existing = list_versions(family, folder)
    counters = _read_counters(folder)
    number = max(existing[-1].number if existing else 0, counters.get(family, 0)) + 1
    counters[family] = number
    with atomic_path(folder / COUNTERS_NAME) as tmp:
        tmp.write_text(json.dumps(counters, indent=1, sort_keys=True), encoding="utf-8")
    name = f"{family}-v{number}"
    return name, folder / f"{name}{MODEL_SUFFIX}"


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
        Defaults to :func:`~napari_unet.core.models.registry.user_model_dir`.

    Returns
    -------
    ModelVersion
        The version written.

    """
    family = family_of(family or bundle.name)
    _check_name(family)
    provenance = dict(bundle.provenance)
    provenance.setdefault("parent", bundle.name)
    provenance.setdefault("parent_source", bundle.source)
    with store_lock(folder) as folder:
        name, final = _next_version(family, folder)
        bundle.name = name
        bundle.provenance = provenance
        save_model(bundle, final)
        if _scored_worse(provenance):
            with atomic_path(folder / NOT_BETTER_NAME) as tmp:
                tmp.write_text(json.dumps(sorted(not_better(folder) | {name}), indent=1), encoding="utf-8")
    bundle.source = str(final)
    match = _VERSION.match(name)
    assert match is not None
    return ModelVersion(name, family, int(match["number"]), final)


def _check_name(name: str) -> None:
    if not _VALID_NAME.match(name):
        raise StoreError(
            f"{name!r} is not a valid model name (letters, digits, '.', '_', '+', '-'; "
            f"starting with a letter or digit)"
        )


def _user_model_path(name: str, folder: Path) -> Path:
    if name in BUNDLED_MODELS:
        raise StoreError(
            f"{name} is a bundled model: it cannot be renamed or deleted (it is not in the store)"
        )
    path = folder / f"{name}{MODEL_SUFFIX}"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(folder.glob(f"*{MODEL_SUFFIX}"))) or "none"
        raise StoreError(f"{name}: no such model in the store {folder} (models there: {known})")
    return path


def rename_model(old: str, new: str, folder: Path | None = None) -> Path:
    """Give a stored model a new name (the file and the name inside it).

    Its weights and lineage are unchanged; its provenance records the old
    name as ``renamed_from``.  Fine-tuning a renamed model ``name`` saves
    ``name-v1``, ``name-v2`` ...

    Returns
    -------
    Path
        The model's new file.

    Raises
    ------
    StoreError
        If ``old`` is not in the store, or ``new`` is invalid, a bundled
        model's name, or taken.

    """
    _check_name(new)
    if new in BUNDLED_MODELS:
        raise StoreError(f"{new} is the name of a bundled model; choose another name")
    with store_lock(folder) as folder:
        path = _user_model_path(old, folder)
        target = folder / f"{new}{MODEL_SUFFIX}"
        if target.exists():
            raise StoreError(f"{new}: a model of that name already exists ({target})")
        bundle = load_model(path)
        bundle.name = new
        bundle.provenance = {**bundle.provenance, "renamed_from": old}
        save_model(bundle, target)
        path.unlink()
    return target


def delete_model(name: str, folder: Path | None = None) -> Path:
    """Delete a stored model's file.

    Models fine-tuned from it keep its name and weights hash in their lineage.

    Returns
    -------
    Path
        The deleted file.

    Raises
    ------
    StoreError
        If ``name`` is not in the store (bundled models cannot be deleted).

    """
    with store_lock(folder) as folder:
        path = _user_model_path(name, folder)
        path.unlink()
    return path


def rollback(name: str, folder: Path | None = None) -> ModelVersion:
    """Make ``name`` the current model of its family again.

    A copy of ``name`` (same weights, its own lineage, plus ``restored_from``)
    is saved as the family's next version, so the newest version is again
    the one the user trusts, and no version is lost.  ``name`` may be a
    bundled model: ``rollback("nuclei")`` puts the bundled weights back on top
    of the user's ``nuclei-v<N>`` versions.

    Returns
    -------
    ModelVersion
        The new version (holding ``name``'s weights).

    Raises
    ------
    StoreError, ModelFileError
        If ``name`` does not exist or cannot be loaded.

    """
    folder = _folder(folder)
    if name in BUNDLED_MODELS:
        source = bundled_model_path(name)
    else:
        source = folder / f"{name}{MODEL_SUFFIX}"
        if not source.is_file():
            raise StoreError(f"{name}: no such model in the store {folder}")
    bundle = load_model(source)
    restored = {
        "name": bundle.name,
        "hash": bundle.weights_hash(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    bundle.provenance = {
        **bundle.provenance,
        # a restored copy has the same parent as the version it restores
        "parent": bundle.provenance.get("parent", bundle.name),
        "parent_source": bundle.provenance.get("parent_source", ""),
        "restored_from": restored,
    }
    return save_version(bundle, family_of(name), folder)


def import_model(path: str | Path, folder: Path | None = None) -> ModelVersion:
    """Copy a model file or bioimage.io package into the store as the next version of its family.

    The copy keeps the model's lineage and records ``imported_from``; a
    colleague's ``nuclei-v3`` arrives as, say, ``nuclei-v5`` beside your own versions.

    Raises
    ------
    ModelFileError
        If ``path`` cannot be loaded safely (see :func:`~napari_unet.core.models.registry.load_model`).

    """
    bundle = load_model(path)
    bundle.provenance = {**bundle.provenance, "imported_from": str(path)}
    return save_version(bundle, folder=folder)


def find_by_hash(weights_hash: str, folder: Path | None = None) -> Path | None:
    """A model file (bundled or stored) whose weights have ``weights_hash``, if any."""
    candidates = [bundled_model_path(n) for n in BUNDLED_MODELS]
    folder = _folder(folder)
    if folder.is_dir():
        candidates += sorted(folder.glob(f"*{MODEL_SUFFIX}"))
    for path in candidates:
        try:
            if load_model(path).weights_hash() == weights_hash:
                return path
        except ModelFileError:
            continue
    return None


def parent_of(bundle: ModelBundle) -> str | None:
    """File of the model ``bundle`` was fine-tuned from, else its recorded name (or ``None``).

    The recorded file is used only if it still holds the parent's weights
    (same hash); otherwise the store and the bundled models are searched for
    those weights, so a renamed parent is still found.
    """
    provenance = bundle.provenance
    parent_hash = provenance.get("parent_hash")
    source = provenance.get("parent_source")
    if source and Path(source).is_file():
        if parent_hash is None:
            return str(source)
        try:
            if load_model(source).weights_hash() == parent_hash:
                return str(source)
        except ModelFileError:
            pass
    if parent_hash:
        found = find_by_hash(str(parent_hash))
        if found is not None:
            return str(found)
    parent = provenance.get("parent")
    return str(parent) if parent else None


def describe(bundle: ModelBundle, with_file: bool = True) -> list[str]:
    """Lines telling what ``bundle`` is: hash, architecture, parent, lineage, data, steps, metrics.

    ``with_file=False`` leaves out the local file path (for text shared with others).
    """
    provenance = bundle.provenance
    config = bundle.config
    lines = [f"name:         {bundle.name}"]
    if with_file:
        lines.append(f"file:         {bundle.source or '(not saved)'}")
    lines += [
        f"weights hash: {bundle.weights_hash()}",
        f"architecture: U-Net, {config.in_channels} input channel(s), base width {config.base_width}, "
        f"depth {config.depth}, {config.norm} norm, heads {', '.join(config.heads)}",
    ]
    if provenance.get("date"):
        lines.append(f"trained:      {provenance['date']}")
    steps = provenance.get("steps")
    if steps is None and isinstance(provenance.get("training"), dict):
        steps = provenance["training"].get("steps")
    if steps is not None:
        lines.append(
            f"steps:        {steps}" + ("  (stopped early)" if provenance.get("stopped_early") else "")
        )
    if provenance.get("parent"):
        lines.append(
            f"parent:       {provenance['parent']} (weights {provenance.get('parent_hash', 'unknown')})"
        )
    restored = provenance.get("restored_from")
    if isinstance(restored, dict):
        lines.append(f"restored:     copy of {restored.get('name')} made {restored.get('date')}")
    if provenance.get("renamed_from"):
        lines.append(f"renamed from: {provenance['renamed_from']}")
    ancestors = provenance.get("ancestors")
    if isinstance(ancestors, list) and ancestors:
        chain = " <- ".join(f"{a.get('name')} ({a.get('hash')})" for a in ancestors if isinstance(a, dict))
        lines.append(f"lineage:      {bundle.name} <- {chain}")
    images = provenance.get("images")
    if isinstance(images, list) and images:
        lines.append(f"images:       {len(images)}")
        lines += [
            f"  {i.get('name')}  sha256 {str(i.get('sha256'))[:16]}" for i in images if isinstance(i, dict)
        ]
    elif isinstance(provenance.get("data"), dict):
        data = provenance["data"]
        lines.append(f"data:         {data.get('images')} ({data.get('pattern', '*')})")
    metrics = provenance.get("metrics")
    if isinstance(metrics, dict) and metrics:
        lines.append("metrics:      " + ", ".join(f"{k} {_number(v)}" for k, v in metrics.items()))
    held_out = validation_of(bundle)
    if held_out is not None:
        better = "better than its parent" if held_out.get("better") else "NOT better than its parent"
        lines.append(f"held out:     {describe_validation(held_out, 'parent → this')}; {better}")
    return lines


def _number(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


__all__ = [
    "COUNTERS_NAME",
    "LOCK_NAME",
    "ModelVersion",
    "StoreError",
    "current_version",
    "delete_model",
    "describe",
    "describe_choice",
    "family_of",
    "find_by_hash",
    "import_model",
    "list_versions",
    "model_standing",
    "not_better",
    "parent_of",
    "rename_model",
    "rollback",
    "save_version",
    "starting_model",
    "store_lock",
]
