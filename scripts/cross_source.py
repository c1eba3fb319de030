"""Cross-source accuracy: train with one group of images held out, score on that group.

A model scored on a validation split drawn from the same sources as its training data looks
better than it is on images from another lab.  This script splits a data set by acquisition,
holds one group out at a time, trains a model on the rest with a training recipe (the options
of ``napari-unet train``), and scores it on every image of the held-out group (its training and
validation images alike: that model has seen none of them).  The mean over the groups is the
number to improve; nothing may be chosen on the held-out groups' scores of another recipe.

Groups (a rule on the image or its labels, so that anyone can repeat the split):

- ``nuclei-dsb2018`` (fluorescence nuclei) by image size, which in the Data Science Bowl set
  stands for the acquisition: 256×256 (cultured cells, many labs), 360×360 (large nuclei,
  low signal), 520×696 (crowded fields), and every other size together (tissue sections and
  single acquisitions: 512×640, 603×1272, 260×347, 256×320, 1040×1388).
- ``cells-usiigaci`` (phase contrast) by cell type, told apart by median cell diameter: about
  70 px (larger than 55 px) or about 40 px.
- ``nuclei-dsb2018-other`` (brightfield and H&E) by colour: grey brightfield or RGB.

Trainings run through ``napari-unet train`` and are resumable: a model already written is
reused, and an interrupted training resumes from its checkpoint.  CPU, 2 cores: about
0.5 s per step of 8 crops of 192².

Usage::

    python scripts/cross_source.py nuclei-dsb2018 --out cross/nuclei --steps 1500 \\
        [--control] [--reference nuclei] [--groups NAME ...] [-- TRAIN_OPTIONS ...]

``TRAIN_OPTIONS`` default to the bundled model's recipe for the data set (see ``RECIPES``).
Prints a table: per held-out group, the images, objects, AP@0.5 and AP@0.75 of the model
trained without it; with ``--control``, of a model trained on every group with the same
recipe and steps (so that the gap is what holding the group out costs, not a shorter
training); and of ``--reference`` (a bundled model, which saw the group in training and
trained longer, for comparison only).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_unet.core.evaluation.evaluate import evaluate_bundle
from napari_unet.core.io.files import read_labelled_folder
from napari_unet.core.models.registry import load_model, resolve_model
from napari_unet.core.segmentation.sizing import median_diameter

DATA = Path(
    os.environ.get("NAPARI_UNET_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
)


def nuclei_group(image: np.ndarray, labels: np.ndarray) -> str:
    """Fluorescence nuclei: the acquisition, as the image size tells it."""
    shape = image.shape[-2:]
    return {(256, 256): "256x256", (360, 360): "360x360", (520, 696): "520x696"}.get(shape, "other sizes")


def cell_type_group(image: np.ndarray, labels: np.ndarray) -> str:
    """Phase-contrast cells: the cell type, as the median cell diameter tells it."""
    return "cells ~70 px" if median_diameter(labels) > 55 else "cells ~40 px"


def colour_group(image: np.ndarray, labels: np.ndarray) -> str:
    """Transmitted-light nuclei: grey brightfield or colour (H&E and colour brightfield)."""
    return "RGB" if image.ndim == 3 else "grey"


GROUPINGS: dict[str, Callable[[np.ndarray, np.ndarray], str]] = {
    "nuclei-dsb2018": nuclei_group,
    "cells-usiigaci": cell_type_group,
    "nuclei-dsb2018-other": colour_group,
}
RECIPES = {
    "nuclei-dsb2018": ["--model-diameter", "20", "--scale-jitter", "1.5"],
    "cells-usiigaci": ["--model-diameter", "32", "--min-size", "30", "--scale-jitter", "1.5"],
    "nuclei-dsb2018-other": ["--in-channels", "3", "--model-diameter", "20", "--scale-jitter", "1.5"],
}


def grouped(dataset: str) -> dict[str, dict[str, list]]:
    """``{group: {"train": [(name, image, labels)], "val": [...]}}`` for a data set's splits."""
    groups: dict[str, dict[str, list]] = {}
    for split in ("train", "val"):
        folder = DATA / dataset / split
        if not folder.exists():
            continue
        for name, image, labels in read_labelled_folder(folder / "images", folder / "labels"):
            group = GROUPINGS[dataset](image, labels)
            groups.setdefault(group, {"train": [], "val": []})[split].append((name, image, labels))
    return groups


def held_out_model(out: Path, group: str) -> Path:
    """The file of the model trained without ``group``."""
    return out / f"without-{group.replace(' ', '-').replace('~', '')}.pt"


def train_without(dataset: str, names: set[str], model: Path, steps: int, recipe: list[str]) -> Path:
    """Train ``model`` on ``dataset``'s training images except ``names``; reuse the model if it exists."""
    if model.exists():
        return model
    folder = DATA / dataset / "train"
    subset = model.parent / f"data-{model.stem}"
    for kind in ("images", "labels"):
        (subset / kind).mkdir(parents=True, exist_ok=True)
        for path in sorted((folder / kind).glob("*.tif")):
            link = subset / kind / path.name
            if path.stem not in names and not link.exists():
                link.symlink_to(path.resolve())
    command = ["napari-unet", "train", "--images", str(subset / "images"), "--labels", str(subset / "labels")]
    command += ["-o", str(model), "--steps", str(steps), "--log-every", "250", *recipe]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(GROUPINGS))
    parser.add_argument("--out", type=Path, required=True, help="folder for the held-out-group models")
    parser.add_argument("--steps", type=int, default=1500, help="training steps per held-out group")
    parser.add_argument("--reference", help="also score this model (name or file) on each group")
    parser.add_argument("--groups", nargs="+", help="hold out only these groups (default: each in turn)")
    parser.add_argument(
        "--control",
        action="store_true",
        help="also train one model on every group with the same recipe and steps, and score it on each group "
        "(it saw the group's training images): the gap to it is what holding the group out costs",
    )
    parser.epilog = "Options after -- go to napari-unet train (default: the bundled model's recipe)."
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    recipe = argv[split + 1 :] or RECIPES[args.dataset]
    args.out.mkdir(parents=True, exist_ok=True)
    groups = grouped(args.dataset)
    print(
        f"{args.dataset}: "
        + ", ".join(f"{g} {len(s['train'])} + {len(s['val'])}" for g, s in sorted(groups.items()))
    )
    unknown = sorted(set(args.groups or ()) - set(groups))
    if unknown:
        parser.error(
            f"no group {', '.join(unknown)} in {args.dataset}; its groups: {', '.join(sorted(groups))}"
        )
    reference = load_model(resolve_model(args.reference)) if args.reference else None
    control = (
        load_model(train_without(args.dataset, set(), args.out / "every-group.pt", args.steps, recipe))
        if args.control
        else None
    )
    rows = []
    for group in args.groups or sorted(groups):
        pairs = groups[group]["train"] + groups[group]["val"]
        names = {Path(name).stem for name, _, _ in groups[group]["train"]}
        model = train_without(args.dataset, names, held_out_model(args.out, group), args.steps, recipe)
        held_out = evaluate_bundle(load_model(model), pairs)
        row = [group, len(pairs), int(sum(len(np.unique(lab)) - 1 for _, _, lab in pairs))]
        row += [held_out["ap50"], held_out["ap75"]]
        for seen_by in (control, reference):
            if seen_by is not None:
                seen = evaluate_bundle(seen_by, pairs)
                row += [seen["ap50"], seen["ap75"]]
        rows.append(row)
        print(f"{group}: held out AP@0.5 {held_out['ap50']:.3f}, AP@0.75 {held_out['ap75']:.3f}", flush=True)

    header = "| held-out group | images | objects | AP@0.5 | AP@0.75 |"
    if control is not None:
        header += " every group trained: AP@0.5 | AP@0.75 |"
    if reference is not None:
        header += f" `{args.reference}` AP@0.5 (seen) | AP@0.75 (seen) |"
    print(f"\n{args.dataset}, {args.steps} steps, recipe: {' '.join(recipe)}\n")
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for row in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row) + " |")
    means = [float(np.mean([row[i] for row in rows])) for i in range(3, len(rows[0]))]
    print("| mean over groups | | | " + " | ".join(f"{m:.3f}" for m in means) + " |")


if __name__ == "__main__":
    sys.exit(main())
