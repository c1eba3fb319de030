"""The whole "segment, correct, fine-tune" loop in napari, timed, with the labels scored.

A person opens an image, presses Segment, fixes the worst objects with napari's
Labels tools, presses Fine-tune (the widget's defaults) and looks at the new
labels.  This script does the same through the widget: the "person" erases the
predictions overlapping each of the worst objects with the fill tool and paints
back, from the ground truth, every true object the erasing uncovered, with
``data_setitem`` (what napari's brush calls).  An erased prediction that joined
two cells and was not redrawn would teach "background" on a cell: with only the
chosen objects redrawn, fine-tuning lowered AP@0.5 on the corrected image.  It
prints the wall time of each machine step and AP@0.5 (pooled over images) before and after
fine-tuning, on the corrected image and on held-out images of the same kind.
One run is one draw of the training seed: ``finetune_spread.py`` repeats the
fine-tune (without the GUI) over several seeds, with controls.

Run under a display (napari needs OpenGL)::

    xvfb-run -a python benchmarks/correction_loop.py [--model phase-cells] [--objects 10]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from _common import PHASE_VAL


def worst_objects(truth: np.ndarray, predicted: np.ndarray, count: int) -> list[int]:
    """True objects whose best-matching prediction overlaps them least (IoU), worst first."""
    scores = []
    for object_id in np.unique(truth)[1:]:
        mask = truth == object_id
        overlapping = np.unique(predicted[mask])
        best = 0.0
        for candidate in overlapping[overlapping > 0]:
            other = predicted == candidate
            best = max(best, (mask & other).sum() / (mask | other).sum())
        scores.append((best, int(object_id)))
    return [object_id for _, object_id in sorted(scores)[:count]]


def add_loop_arguments(parser: argparse.ArgumentParser) -> None:
    """The options this benchmark shares with ``finetune_spread.py``: model, data, objects."""
    parser.add_argument("--model", default="phase-cells", help="model name or file (default phase-cells)")
    parser.add_argument(
        "--images", default=str(PHASE_VAL / "images"), help="folder of images (first is corrected)"
    )
    parser.add_argument("--labels", default=str(PHASE_VAL / "labels"), help="their instance labels")
    parser.add_argument("--objects", type=int, default=10, help="objects the person corrects (default 10)")


def correction_plan(
    predicted: np.ndarray, truth: np.ndarray, object_ids: list[int]
) -> tuple[np.ndarray, list[int]]:
    """What a person fixing ``object_ids`` erases and then redraws.

    Returns the pixels of every prediction overlapping a chosen object (erased),
    and the true objects redrawn: the chosen ones and every one the erasing
    uncovered (a person who erases a prediction joining two cells redraws both,
    not only the one they chose).
    """
    wrong = np.unique(predicted[np.isin(truth, object_ids)])
    erased = np.isin(predicted, wrong[wrong > 0])
    return erased, sorted(set(object_ids) | (set(np.unique(truth[erased]).tolist()) - {0}))


def correct(layer, truth: np.ndarray, object_ids: list[int]) -> tuple[int, int]:
    """Fix ``object_ids`` as a person would; returns (objects redrawn, pixels touched).

    Each prediction overlapping a chosen true object is erased with the fill tool, and
    the objects :func:`correction_plan` redraws are painted back with the brush.
    """
    _, redrawn = correction_plan(layer.data, truth, object_ids)
    for object_id in object_ids:
        mask = truth == object_id
        for wrong in np.unique(layer.data[mask]):
            if wrong == 0:
                continue
            y, x = np.argwhere((layer.data == wrong) & mask)[0]
            layer.fill((int(y), int(x)), 0)  # the fill tool with label 0 erases an object
    next_id = int(layer.data.max()) + 1
    touched = 0
    for object_id in redrawn:
        mask = truth == object_id
        layer.data_setitem(np.nonzero(mask), next_id)  # what a brush stroke calls
        touched += int(mask.sum())
        next_id += 1
    return len(redrawn), touched


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_loop_arguments(parser)
    parser.add_argument("--steps", type=int, default=0, help="fine-tuning steps (default: the widget's)")
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="napari-unet-loop-")
    os.environ["NAPARI_UNET_MODEL_DIR"] = str(Path(scratch) / "models")
    os.environ["NAPARI_UNET_CORRECTIONS_DIR"] = str(Path(scratch) / "corrections")

    import napari  # noqa: TID251 (a GUI benchmark)
    from qtpy.QtWidgets import QApplication  # noqa: TID251

    from napari_unet.core.config import InferenceConfig
    from napari_unet.core.evaluation.metrics import summarise
    from napari_unet.core.models.registry import load_model, resolve_model
    from napari_unet.core.segmentation.segmenter import segment_array

    names = sorted(p.name for p in Path(args.images).glob("*.tif"))
    images = [tifffile.imread(Path(args.images) / n) for n in names]
    truths = [tifffile.imread(Path(args.labels) / n) for n in names]

    def score(model_path: str) -> tuple[float, float]:
        bundle = load_model(model_path)
        predicted = [
            segment_array(image, bundle, inference=InferenceConfig(device="cpu")).labels for image in images
        ]
        corrected = summarise(truths[:1], predicted[:1])["ap50"]
        held_out = summarise(truths[1:], predicted[1:])["ap50"]
        return corrected, held_out

    viewer = napari.Viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-unet", "U-Net segmentation")
    widget.confirm = lambda question: True
    widget.select_model(resolve_model(args.model))
    if args.steps:
        widget.finetune._steps.value = args.steps

    def wait(condition) -> float:
        started = time.perf_counter()
        while condition():
            QApplication.processEvents()
            time.sleep(0.005)
        return time.perf_counter() - started

    viewer.add_image(images[0], name=names[0])
    started = time.perf_counter()
    widget.segment()
    wait(lambda: widget.segment_worker is not None)
    segment_s = time.perf_counter() - started
    labels = viewer.layers[f"{names[0]} labels"]
    chosen = worst_objects(truths[0], labels.data, args.objects)
    redrawn, touched = correct(labels, truths[0], chosen)
    widget.recorder.flush(wait=True)

    parent = widget.model.path
    started = time.perf_counter()
    widget.finetune.start()
    wait(lambda: widget.finetune.running or widget.segment_worker is not None)
    finetune_s = time.perf_counter() - started
    child = widget.model.path
    viewer.close()

    before, after = score(parent), score(child)
    print(
        f"model {args.model}; corrected image {names[0]} {images[0].shape}: the {len(chosen)} worst objects "
        f"fixed ({redrawn} objects, {touched} px redrawn); held out: {len(names) - 1} images; torch CPU, {os.cpu_count()} cores"
    )
    print(f"{'step':<44} {'seconds':>8}")
    print(f"{'Segment (network + post-processing)':<44} {segment_s:8.1f}")
    print(f"{'Fine-tune (widget defaults) + re-segment':<44} {finetune_s:8.1f}")
    print(f"\n{'AP@0.5':<20} {'corrected image':>16} {'held-out images':>16}")
    print(f"{'before':<20} {before[0]:16.3f} {before[1]:16.3f}")
    print(f"{'after fine-tune':<20} {after[0]:16.3f} {after[1]:16.3f}")


if __name__ == "__main__":
    main()
