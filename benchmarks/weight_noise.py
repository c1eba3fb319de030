"""How much a model's validation scores move when its weights barely move.

Every weight is multiplied by ``1 + relative * N(0, 1)`` (default 10⁻⁴: 0.01 %),
with a different random draw each time, and the model is scored again on a
labelled folder (the metrics of ``napari-unet evaluate``, object size estimated per image as
``napari-unet evaluate`` does).  Such a change teaches the model nothing, so the
spread it causes is the least difference between two models' scores on this
folder that can mean anything: read a "better" checkpoint or post-processing
choice against it.

Usage::

    python benchmarks/weight_noise.py [--model nuclei] [--images DIR --labels DIR] [--draws 5] [--relative 1e-4]

Defaults: the ``nuclei`` model on ``nuclei-dsb2018/val`` (``$NAPARI_UNET_DATA``
or ``../shared/data``).
"""

from __future__ import annotations

import argparse

import torch

from _common import NUCLEI_VAL, machine, spread, table
from finetune_spread import perturbed
from napari_unet.core.evaluation.evaluate import evaluate_bundle
from napari_unet.core.io.files import read_labelled_folder
from napari_unet.core.models.registry import load_model, resolve_model

METRICS = {"ap50": "AP@0.5", "ap50_95": "AP@0.5:0.95", "adapted_rand_error": "adapted Rand error"}


def cells(scores: dict[str, float]) -> str:
    """One table row's score cells."""
    return " | ".join(f"{scores[key]:.3f}" for key in METRICS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="nuclei", help="bundled name, user model name or file path")
    parser.add_argument("--images", default=str(NUCLEI_VAL / "images"))
    parser.add_argument("--labels", default=str(NUCLEI_VAL / "labels"))
    parser.add_argument("--pattern", default="*")
    parser.add_argument("--draws", type=int, default=5, help="random draws of the weight noise")
    parser.add_argument("--relative", type=float, default=1e-4, help="noise as a fraction of each weight")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    parent = load_model(resolve_model(args.model))
    pairs = read_labelled_folder(args.images, args.labels, args.pattern)
    print(
        f"{machine()}; {parent.name} on {args.images} ({len(pairs)} images), weights × (1 + {args.relative:g} N(0, 1))"
    )
    print()
    print(table(["weights", *METRICS.values()], []))  # rows follow as they are measured
    print(f"| as trained | {cells(evaluate_bundle(parent, pairs))} |", flush=True)
    draws = []
    for seed in range(args.draws):
        draws.append(evaluate_bundle(perturbed(parent, args.relative, seed), pairs))
        print(f"| draw {seed} | {cells(draws[-1])} |", flush=True)
    print(f"| noise draws: mean (range) | {' | '.join(spread([d[key] for d in draws]) for key in METRICS)} |")


if __name__ == "__main__":
    main()
