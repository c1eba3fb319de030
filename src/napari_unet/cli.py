"""The ``napari-unet`` command line: segment, train, evaluate, models, export."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from napari_unet import __version__
from napari_unet.core.config import InferenceConfig  # light: dataclasses only, for defaults in --help


def _bar(total: int, desc: str, unit: str, leave: bool = True, bar_format: str | None = None) -> tqdm:
    """A progress bar on stderr, drawn only when stderr is a terminal (not in logs or pipes)."""
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        leave=leave,
        bar_format=bar_format,
        file=sys.stderr,
        disable=not sys.stderr.isatty(),
        dynamic_ncols=True,
    )


_FILE_BAR = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}{postfix}"
"""A file's bar: its share done and time left (a rate in % per second would say nothing)."""


def _say(message: str, stream: TextIO | None = None) -> None:
    """Print a line (to stderr unless told) above any progress bars."""
    tqdm.write(message, file=stream or sys.stderr)


NEW_MODEL_OPTIONS: dict[str, object] = {
    "--base-width": 16,
    "--depth": 4,
    "--in-channels": 1,
    "--model-diameter": 24.0,
    "--no-rescale": False,
    "--fill-background": False,
    "--min-size": 10,
}
"""``train`` options that shape a new model, with their defaults; ``--from`` refuses them."""


def _dest(option: str) -> str:
    """The attribute argparse stores ``option`` under."""
    return option.lstrip("-").replace("-", "_")


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from napari_unet.core.config import ModelConfig, PostprocessConfig, PreprocessConfig
    from napari_unet.core.models.files import ModelBundle, save_model
    from napari_unet.core.models.network import UNet
    from napari_unet.core.models.registry import load_model, resolve_model
    from napari_unet.core.progress import Progress, run
    from napari_unet.core.training.checkpoint import Checkpointing
    from napari_unet.core.training.folders import LabelledFolders, folder_config, train_on_folders
    from napari_unet.core.training.validation import describe, validation_of

    _set_threads(args.threads)
    given = [option for option in NEW_MODEL_OPTIONS if getattr(args, _dest(option)) is not None]
    if args.from_model and given:
        raise ValueError(
            f"{', '.join(given)}: for new models only; --from {args.from_model} keeps that model's architecture, "
            "working size and defaults"
        )
    for option, default in NEW_MODEL_OPTIONS.items():
        if getattr(args, _dest(option)) is None:
            setattr(args, _dest(option), default)
    config = folder_config(
        bool(args.from_model),
        steps=args.steps or None,
        batch_size=args.batch_size,
        crop_size=args.crop_size,
        learning_rate=args.lr or None,
        seed=args.seed,
        freeze_norm=False if args.train_norm else None,
        amp=False if args.no_amp else None,
        scale_jitter=args.scale_jitter,
        aspect_jitter=args.aspect_jitter,
        validate_every=args.validate_every,
    )
    if args.from_model:
        bundle = load_model(resolve_model(args.from_model))
        if args.name:
            bundle.name = args.name
    else:
        torch.manual_seed(config.seed)  # the same seed gives the same starting weights, hence the same model
        bundle = ModelBundle(
            network=UNet(
                ModelConfig(in_channels=args.in_channels, base_width=args.base_width, depth=args.depth)
            ),
            preprocess=PreprocessConfig(object_diameter=args.model_diameter, rescale=not args.no_rescale),
            postprocess=PostprocessConfig(fill_background=args.fill_background, min_size=args.min_size),
            name=args.name or Path(args.output).stem,
        )
    validation = None
    if args.val_images and args.val_labels:
        validation = LabelledFolders(args.val_images, args.val_labels, args.val_pattern)
    hold_out = bool(args.from_model) and not args.no_hold_out
    checkpoint = None
    if args.checkpoint_every and not hold_out:
        checkpoint = Checkpointing(checkpoint_path(args.output), every=args.checkpoint_every)
    job = train_on_folders(
        bundle,
        LabelledFolders(args.images, args.labels, args.pattern),
        config,
        device=args.device,
        validation=validation,
        command="napari-unet " + " ".join(sys.argv[1:]),
        hold_out=hold_out,
        checkpoint=checkpoint,
    )

    bar = _bar(config.steps, "training", "step")

    def show(record: Progress) -> None:
        if not record.metrics:  # before training: what was prepared
            _say(record.message)
            return
        bar.update(record.step - bar.n)
        bar.set_postfix_str(f"loss {record.metrics.get('loss_smoothed', 0):.4f}", refresh=False)
        extra = {k: v for k, v in record.metrics.items() if k not in ("loss", "loss_smoothed", "lr")}
        if record.step % args.log_every == 0 or extra:
            _say(json.dumps({"step": record.step, **{k: round(v, 5) for k, v in record.metrics.items()}}))

    with bar:
        result = run(job, show)
    save_model(result, args.output)
    if checkpoint is not None:
        Path(checkpoint.path).unlink(missing_ok=True)
    print(f"saved {args.output}")
    held_out = validation_of(result)
    if held_out is not None:  # --from: the same comparison the widget shows
        print(describe(held_out, "held-out labels"))
        if not held_out["better"]:
            print(f"not better than {args.from_model} on the held-out labels: keep using it")
    return 0


def checkpoint_path(output: str | os.PathLike[str]) -> Path:
    """Where ``napari-unet train -o OUTPUT`` keeps its checkpoint: ``OUTPUT.checkpoint`` beside it."""
    return Path(f"{os.fspath(output)}.checkpoint")


def _error(message: str) -> None:
    _say(f"napari-unet: error: {message}")


def _postprocess(args: argparse.Namespace, bundle):  # noqa: ANN001, ANN202 - a ModelBundle -> PostprocessConfig
    """The model's post-processing defaults with the thresholds given on the command line."""
    import dataclasses

    options = {
        "foreground_threshold": "--probability",
        "seed_threshold": "--seed-threshold",
        "min_size": "--min-size",
        "join_threshold": "--join-threshold",
        "object_probability": "--object-probability",
    }
    changes = {field: getattr(args, option[2:].replace("-", "_")) for field, option in options.items()}
    try:
        return dataclasses.replace(
            bundle.postprocess, **{field: value for field, value in changes.items() if value is not None}
        )
    except ValueError as error:  # name the option, not the field
        message = str(error)
        for field, option in options.items():
            message = message.replace(field, option)
        raise ValueError(message) from None


def _load(model: str):  # noqa: ANN202 - returns a ModelBundle (imported lazily)
    from napari_unet.core.models.registry import load_model, resolve_model

    return load_model(resolve_model(model))


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (created if missing), or ``None`` if they can.

    Asked once up front, so that a read-only or missing drive gives one line, not one per input.
    """
    import tempfile

    if folder.exists() and not folder.is_dir():
        return "it is a file"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        return error.strerror or str(error)
    return None


def _cmd_segment(args: argparse.Namespace) -> int:
    from napari_unet.core.batch.local import BatchProgress, BatchSettings
    from napari_unet.core.batch.runner import BatchStart, ClusterError, segment_batch
    from napari_unet.core.config import InferenceConfig
    from napari_unet.core.io.files import find_inputs
    from napari_unet.core.progress import run

    _set_threads(args.threads)
    inputs = find_inputs(args.inputs, pattern=args.pattern)
    if not inputs:
        _error(f"no TIFF files found in {' '.join(args.inputs)}")
        return 2
    inference = InferenceConfig(
        device=args.device,
        diameter=args.diameter,
        tile_size=args.tile_size,
        batch_size=args.batch_size,
        amp=args.amp,
        augment=args.augment,
    )
    if not args.scheduler and (problem := _unwritable(Path(args.output))):
        _error(f"cannot write to the output folder {args.output}: {problem}")
        return 2
    bundle = _load(args.model)
    try:
        postprocess = _postprocess(args, bundle)
    except ValueError as error:
        _error(str(error))
        return 2
    settings = BatchSettings(
        axes=args.axes,
        stitch=args.stitch,
        overwrite=args.overwrite,
        overlay=args.overlay,
        provenance=args.provenance,
    )
    job = segment_batch(
        inputs,
        Path(args.output),
        bundle,
        args.model,
        inference,
        postprocess,
        settings,
        scheduler=args.scheduler,
        planes_per_task=args.planes_per_task,
    )
    failed = 0
    overall = _bar(len(inputs), "all files", "file")
    files: dict[Path, tqdm] = {}  # one bar per file in progress (several at once on a cluster)

    def show(record: BatchProgress) -> None:
        nonlocal failed
        if isinstance(record, BatchStart):
            _say(record.message)
            return
        overall.update(record.step - overall.n)
        if record.input is None:
            return
        bar = files.pop(record.input, None) if record.finished else files.get(record.input)
        if record.finished is None:
            if bar is None:
                bar = files[record.input] = _bar(100, record.input.name, "%", False, _FILE_BAR)
            bar.update(round(record.metrics.get("file", 0.0) * 100) - bar.n)
            bar.set_postfix_str(record.message.removeprefix(f"{record.input.name}: "), refresh=False)
            return
        if bar is not None:
            bar.close()
        outcome = record.finished
        if outcome.status == "failed":
            failed += 1
            _error(outcome.error)
        elif outcome.status == "skipped":
            _say(f"skipped {outcome.input} ({outcome.output} is complete; --overwrite to redo)")
        else:
            _say(f"{outcome.output}: {outcome.objects} objects, {outcome.seconds:.1f} s", sys.stdout)
            for notice in outcome.notices:  # about the image against the model, e.g. blank
                _say(f"napari-unet: notice: {outcome.input}: {notice}")

    try:
        # on Ctrl-C, run closes the job: cluster tasks are cancelled, outputs stay complete or absent
        run(job, show)
    except ClusterError as error:
        _error(str(error))
        return 2
    finally:
        for bar in files.values():
            bar.close()
        overall.close()
    if failed:
        _error(f"{failed} of {len(inputs)} input(s) failed")
    return 1 if failed else 0


def _list_models() -> None:
    from napari_unet.core.models.registry import (
        BUNDLED_MODELS,
        DEFAULT_MODEL,
        bundled_model_path,
        user_models,
    )
    from napari_unet.core.models.store import model_standing

    # the standing is in the words the widget uses for the model it will run
    rows = [(name, bundled_model_path(name)) for name in BUNDLED_MODELS]
    rows += list(user_models().items())
    for name, path in rows:
        marker = " (default)" if name == DEFAULT_MODEL else ""
        state = "" if path.is_file() else "  [missing]"
        print(f"{name:<24} {model_standing(name):<44} {path}{marker}{state}")


def _cmd_models(args: argparse.Namespace) -> int:
    from napari_unet.core.models import store

    action = args.action or "list"
    if action == "list":
        _list_models()
    elif action == "info":
        print("\n".join(store.describe(_load(args.name))))
    elif action == "rename":
        print(f"renamed {args.old} -> {args.new} ({store.rename_model(args.old, args.new)})")
    elif action == "delete":
        print(f"deleted {args.name} ({store.delete_model(args.name)})")
    elif action == "rollback":
        version = store.rollback(args.name)
        print(f"restored {args.name} as {version.name}, now the current version of {version.family}")
    elif action == "import":
        version = store.import_model(args.file)
        print(f"imported {args.file} as {version.name} ({version.path})")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from napari_unet.core.models.bioimageio.export import BioimageioUnavailable, export_package

    image = None
    if args.image:
        from napari_unet.core.io.files import read_image

        image = read_image(args.image)
        if image.ndim != 2:
            _error(f"{args.image}: the test image must be one 2-D plane (Y, X), got shape {image.shape}")
            return 2
    try:
        path = export_package(
            _load(args.model), args.output, test_image=image, authors=args.author, license=args.license
        )
    except BioimageioUnavailable as error:
        _error(str(error))
        return 2
    print(f"wrote {path} (bioimage.io model package, validated with bioimageio.spec)")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from napari_unet.core.config import InferenceConfig
    from napari_unet.core.evaluation.evaluate import evaluate_bundle, evaluate_classical
    from napari_unet.core.io.files import read_labelled_folder

    _set_threads(args.threads)
    pairs = read_labelled_folder(args.images, args.labels, args.pattern)
    if args.classical:
        name = "classical (Otsu + distance watershed)"
        metrics = evaluate_classical(pairs)
    else:
        bundle = _load(args.model)
        name = bundle.name
        inference = InferenceConfig(
            device=args.device, diameter=args.diameter, amp=args.amp, augment=args.augment
        )
        try:
            postprocess = _postprocess(args, bundle)
        except ValueError as error:
            _error(str(error))
            return 2
        metrics = evaluate_bundle(bundle, pairs, inference=inference, postprocess=postprocess)
    if args.json:
        print(json.dumps({"model": name, "image_folder": str(args.images), **metrics}))
    else:
        print(f"model: {name}   images: {args.images} ({len(pairs)})")
        for key in ("ap50", "ap75", "ap50_95", "foreground_iou", "adapted_rand_error"):
            print(f"  {key:<20} {metrics[key]:.4f}")
    return 0


def _postprocess_options(command: argparse.ArgumentParser) -> None:
    """The widget's post-processing controls as options (``--probability``, ``--seed-threshold``, ...)."""
    command.add_argument(
        "--probability", type=float, help="foreground probability threshold (default: the model's)"
    )
    command.add_argument(
        "--seed-threshold",
        type=float,
        help="lower joins objects cut in pieces, higher separates touching ones (default: the model's)",
    )
    command.add_argument(
        "--min-size",
        type=int,
        help="objects under this many pixels at the model's scale join a touching object or are "
        "dropped (default: the model's)",
    )
    command.add_argument(
        "--join-threshold",
        type=float,
        help="touching objects are joined when the border between them runs higher than this "
        "fraction of the distance map's peak; 1 joins nothing, lower joins more (default: the model's)",
    )
    command.add_argument(
        "--object-probability",
        type=float,
        help="objects whose mean foreground probability is under this are dropped; 0 keeps all "
        "(default: the model's)",
    )


def _network_options(command: argparse.ArgumentParser) -> None:
    """``--amp`` and ``--augment``: how the network runs (segment and evaluate)."""
    command.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        help="mixed precision, bf16 on CPU (default: where the hardware computes it natively)",
    )
    command.add_argument(
        "--augment",
        action="store_true",
        help="average over the image and its flips (4x the network time, steadier outlines)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``napari-unet`` command."""
    parser = argparse.ArgumentParser(
        prog="napari-unet", description="Segment microscopy images with a U-Net; train and evaluate models."
    )
    parser.add_argument("--version", action="version", version=f"napari-unet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    segment = commands.add_parser("segment", help="segment TIFF files or folders into label images")
    segment.add_argument("inputs", nargs="+", help="TIFF files and/or folders")
    segment.add_argument("-o", "--output", required=True, help="output folder for <input stem>.tif labels")
    segment.add_argument("--model", default="nuclei", help="bundled name, user model name or file path")
    segment.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    segment.add_argument(
        "--axes", help="axes of the inputs, e.g. YX, ZYX, TZCYX, YXC (default: from the file)"
    )
    segment.add_argument(
        "--diameter", type=float, help="object diameter in pixels; 0 or omitted: estimated from the image"
    )
    _postprocess_options(segment)
    segment.add_argument("--pattern", default="*", help="file pattern inside folders (default *)")
    segment.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")
    segment.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.png")
    segment.add_argument("--stitch", action="store_true", help="join objects across planes (3-D objects)")
    segment.add_argument(
        "--provenance",
        choices=("minimal", "full"),
        default="minimal",
        help="what each label file records about its origin: minimal (default) keeps the input's and the "
        "model's file names, the SHA-256 of the input and of the weights, the settings and the software "
        "versions; full also keeps their absolute paths and the host name",
    )
    segment.add_argument(
        "--tile-size",
        type=int,
        default=InferenceConfig.tile_size,
        help="largest tile edge (default %(default)s)",
    )
    segment.add_argument(
        "--batch-size", type=int, help="tiles per forward pass (default: 1 on CPU, 4 on GPU)"
    )
    _network_options(segment)
    segment.add_argument("--threads", type=int, default=int(os.environ.get("NAPARI_UNET_THREADS", "0")))
    segment.add_argument(
        "--scheduler",
        help="run on a Dask cluster: scheduler address (tcp://host:8786) or scheduler file; "
        "inputs, output folder and model must be at the same paths on the workers",
    )
    segment.add_argument(
        "--planes-per-task",
        type=int,
        default=8,
        help="with --scheduler: split stacks with more planes into tasks of this many (0: one task per file)",
    )
    segment.set_defaults(func=_cmd_segment)

    models = commands.add_parser(
        "models", help="list bundled and user models; show, rename, delete, roll back, import"
    )
    models.set_defaults(func=_cmd_models)
    actions = models.add_subparsers(dest="action")
    actions.add_parser("list", help="list bundled and user models (the default)")
    info = actions.add_parser("info", help="weights hash, architecture, lineage and training data")
    info.add_argument("name", help="model name or file")
    rename = actions.add_parser("rename", help="rename a model in the store")
    rename.add_argument("old")
    rename.add_argument("new")
    delete = actions.add_parser("delete", help="delete a model from the store")
    delete.add_argument("name")
    rollback = actions.add_parser(
        "rollback", help="make NAME the current version of its family again (saved as the next version)"
    )
    rollback.add_argument("name", help="a stored version or a bundled model")
    import_ = actions.add_parser("import", help="copy a model file or bioimage.io package into the store")
    import_.add_argument("file")

    export = commands.add_parser("export", help="write a model as a bioimage.io model package (.zip)")
    export.add_argument("model", help="bundled name, user model name or file path")
    export.add_argument("-o", "--output", required=True, help="the .zip to write")
    export.add_argument(
        "--image",
        help="2-D TIFF at the model's object size, at least 230 x 230, for the test tensors and cover "
        "(default: synthetic discs of the model's object size; give a real image of its kind)",
    )
    export.add_argument(
        "--author", action="append", help="author name (repeatable; default: you, or the developers)"
    )
    export.add_argument("--license", help="SPDX licence identifier (default BSD-3-Clause)")
    export.set_defaults(func=_cmd_export)

    evaluate = commands.add_parser(
        "evaluate", help="score a model on labelled images (AP, foreground IoU, adapted Rand error)"
    )
    evaluate.add_argument("--images", required=True, help="folder of images (TIFF)")
    evaluate.add_argument("--labels", required=True, help="folder of instance label TIFFs, same names")
    evaluate.add_argument("--pattern", default="*", help="glob selecting images (default *)")
    evaluate.add_argument("--model", default="nuclei", help="bundled name, user model name or file path")
    evaluate.add_argument(
        "--classical", action="store_true", help="score the Otsu + watershed baseline instead"
    )
    evaluate.add_argument(
        "--diameter", type=float, help="object diameter in pixels; 0 or omitted: estimated from the image"
    )
    _postprocess_options(evaluate)
    evaluate.add_argument("--device", default="auto")
    _network_options(evaluate)
    evaluate.add_argument("--json", action="store_true", help="print one JSON line")
    evaluate.add_argument("--threads", type=int, default=int(os.environ.get("NAPARI_UNET_THREADS", "0")))
    evaluate.set_defaults(func=_cmd_evaluate)

    train = commands.add_parser("train", help="train a model from scratch or fine-tune one")
    train.add_argument("--images", required=True, help="folder of training images (TIFF)")
    train.add_argument("--labels", required=True, help="folder of instance label TIFFs, same file names")
    train.add_argument("-o", "--output", required=True, help="model file to write")
    train.add_argument(
        "--from",
        dest="from_model",
        help="fine-tune this model (name or path); one labelled object in five is held out, the best "
        "snapshot on them is kept, training stops when they stop improving, and the scores of the "
        "model and the result are printed",
    )
    train.add_argument(
        "--steps", type=int, help="optimiser steps (default 3000 from scratch, 400 fine-tuning)"
    )
    train.add_argument("--pattern", default="*", help="glob selecting training images (default *)")
    train.add_argument("--val-images", help="validation images, scored during training")
    train.add_argument("--val-pattern", default="*", help="glob selecting validation images")
    train.add_argument("--val-labels", help="validation labels")
    train.add_argument("--validate-every", type=int, default=0, help="steps between validations")
    train.add_argument("--batch-size", type=int, default=8)
    train.add_argument("--crop-size", type=int, default=192)
    train.add_argument("--lr", type=float, help="peak learning rate (default 2e-3, 5e-4 fine-tuning)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument(
        "--scale-jitter", type=float, default=2.0, help="objects shown at 1/J to J times the model's size"
    )
    train.add_argument(
        "--aspect-jitter",
        type=float,
        default=1.0,
        help="objects stretched along a random direction by 1/A to A times, area kept (default 1: none)",
    )
    train.add_argument("--name", help="model name stored in the file (default: output file stem)")
    train.add_argument(
        "--base-width",
        type=int,
        help=f"new models: channels at full resolution (default {NEW_MODEL_OPTIONS['--base-width']})",
    )
    train.add_argument(
        "--depth", type=int, help=f"new models: number of poolings (default {NEW_MODEL_OPTIONS['--depth']})"
    )
    train.add_argument(
        "--in-channels",
        type=int,
        help=f"new models: input channels (default {NEW_MODEL_OPTIONS['--in-channels']})",
    )
    train.add_argument(
        "--model-diameter",
        type=float,
        help="new models: object diameter in pixels the model works at (images are rescaled to it; "
        f"default {NEW_MODEL_OPTIONS['--model-diameter']:g})",
    )
    train.add_argument(
        "--no-rescale", action="store_const", const=True, help="new models: train at native pixel size"
    )
    train.add_argument(
        "--fill-background", action="store_const", const=True, help="new models: objects fill the image (EM)"
    )
    train.add_argument(
        "--min-size",
        type=int,
        help=f"new models: default minimum object size (default {NEW_MODEL_OPTIONS['--min-size']})",
    )
    train.add_argument(
        "--train-norm", action="store_true", help="with --from: keep updating batch-norm statistics"
    )
    train.add_argument(
        "--no-hold-out",
        action="store_true",
        help="with --from: train on every labelled object (continue a model's training) rather than holding "
        "one in five out to keep the best snapshot",
    )
    train.add_argument(
        "--checkpoint-every",
        type=int,
        default=250,
        help="save the run's state to OUTPUT's name + .checkpoint every N steps (0: never); the same command "
        "run again resumes from it (not with held-out validation)",
    )
    train.add_argument("--no-amp", action="store_true", help="train in float32 rather than mixed precision")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    train.add_argument("--threads", type=int, default=int(os.environ.get("NAPARI_UNET_THREADS", "0")))
    train.add_argument("--log-every", type=int, default=50)
    train.set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from napari_unet.core.io.files import InputError
    from napari_unet.core.models.files import ModelFileError

    try:
        return int(args.func(args))
    except (InputError, ModelFileError, ValueError, OSError) as error:
        _error(str(error).splitlines()[0] if str(error) else type(error).__name__)
        return 2
    except KeyboardInterrupt:
        _error("interrupted; completed outputs are kept, re-run to resume")
        return 130
    except Exception as error:  # a bug: still one line for the user; the traceback on request
        if os.environ.get("NAPARI_UNET_DEBUG"):
            raise
        reason = str(error).splitlines()[0] if str(error) else ""
        _error(f"unexpected {type(error).__name__}: {reason} (set NAPARI_UNET_DEBUG=1 for the traceback)")
        return 3


if __name__ == "__main__":
    sys.exit(main())
