"""The one training loop: training from scratch and fine-tuning, CLI and GUI alike.

:func:`train` is a generator.  It yields a :class:`~napari_unet.core.progress.Progress`
after every optimiser step and can be stopped by closing it (or simply no
longer iterating).  It trains a *copy* of the model, so stopping leaves the
caller's model exactly as it was; the trained model is its return value
(see :mod:`napari_unet.core.progress`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Generator
from typing import Any

import torch
import torch.nn.functional as F

from napari_unet.core.config import TrainingConfig
from napari_unet.core.devices import choose_device
from napari_unet.core.io.provenance import trained_model
from napari_unet.core.models.files import ModelBundle
from napari_unet.core.progress import Progress
from napari_unet.core.training.checkpoint import Checkpointing, load_checkpoint, run_settings, save_checkpoint
from napari_unet.core.training.samples import CropSampler, TrainingSample

DICE_HEADS = ("foreground", "boundary")
Validator = Callable[[ModelBundle], dict[str, float]]


def masked_loss(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, heads: tuple[str, ...]
) -> torch.Tensor:
    """BCE on every head plus soft Dice on the foreground and boundary heads.

    Pixels where ``mask`` is 0 contribute nothing, not even as background.

    Parameters
    ----------
    logits : torch.Tensor
        float, shape (B, H, Y, X).
    targets : torch.Tensor
        float in [0, 1], shape (B, H, Y, X).
    mask : torch.Tensor
        float in {0, 1}, shape (B, 1, Y, X).
    heads : tuple of str
        Head names in channel order.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    """
    logits = logits.float()
    supervised = mask.sum().clamp(min=1.0)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    loss = (bce * mask).sum(dim=(0, 2, 3)) / supervised
    total = loss.sum()
    probabilities = torch.sigmoid(logits)
    for index, head in enumerate(heads):
        if head in DICE_HEADS:
            p = probabilities[:, index] * mask[:, 0]
            t = targets[:, index] * mask[:, 0]
            dice = (2 * (p * t).sum() + 1.0) / (p.sum() + t.sum() + 1.0)
            total = total + (1.0 - dice)
    return total


def _learning_rate(step: int, config: TrainingConfig) -> float:
    warmup = max(1, config.steps // 20)
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(1, config.steps - warmup)
    return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


def _train_mode(network: torch.nn.Module, freeze_norm: bool) -> None:
    network.train()
    if freeze_norm:  # few images give poor batch statistics: keep the trained ones
        for module in network.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.eval()


def _autocast_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cuda":
        return torch.float16
    return torch.bfloat16


def train(
    bundle: ModelBundle,
    samples: list[TrainingSample],
    config: TrainingConfig,
    device: str = "auto",
    validate: Validator | None = None,
    provenance: dict[str, Any] | None = None,
    checkpoint: Checkpointing | None = None,
) -> Generator[Progress, None, ModelBundle]:
    """Train a copy of ``bundle`` on ``samples``.

    Parameters
    ----------
    bundle : ModelBundle
        The starting model (left untouched).
    samples : list of TrainingSample
        Training data at the model's scale, with ignore masks.
    config : TrainingConfig
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    validate : callable, optional
        Called with the model being trained every ``config.validate_every``
        steps and at the end; its metrics are added to the progress record.
    provenance : dict, optional
        Extra provenance (data names, command) stored with the new model (see
        :func:`~napari_unet.core.io.provenance.trained_model`).
    checkpoint : Checkpointing, optional
        Save the run's state every ``checkpoint.every`` steps; a run that finds
        a checkpoint of the same settings, model and data resumes from it and
        ends with the model an uninterrupted run gives (see
        :mod:`~napari_unet.core.training.checkpoint`).  The file is left in
        place: remove it once the result is saved.

    Yields
    ------
    Progress
        One per step, ``metrics["loss"]`` the step's loss; the last one's
        message is ``"done"``.

    Returns
    -------
    ModelBundle
        The trained copy, its lineage and training settings in its provenance.

    Raises
    ------
    ValueError
        If the checkpoint belongs to a run with other settings.

    """
    torch_device = choose_device(device)
    torch.manual_seed(config.seed)
    network = copy.deepcopy(bundle.network).to(torch_device)
    channels_last = torch_device.type == "cpu"
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
    _train_mode(network, config.freeze_norm)
    parameters = [p for p in network.parameters() if p.requires_grad]
    if config.optimizer == "adamw":
        optimiser: torch.optim.Optimizer = torch.optim.AdamW(
            parameters, lr=config.learning_rate, weight_decay=config.weight_decay
        )
    else:
        optimiser = torch.optim.SGD(
            parameters, lr=config.learning_rate, momentum=0.9, weight_decay=config.weight_decay, nesterov=True
        )
    sampler = CropSampler(
        samples,
        config.crop_size,
        scale_jitter=config.scale_jitter,
        elastic=config.elastic,
        seed=config.seed,
        aspect_jitter=config.aspect_jitter,
    )
    heads = bundle.config.heads
    autocast_dtype = _autocast_dtype(torch_device)
    started = time.perf_counter()
    smoothed: float | None = None
    metrics: dict[str, float] = {}
    first_step = 0
    settings = run_settings(config, bundle.name, [s.name for s in samples])
    saved = load_checkpoint(checkpoint.path, settings) if checkpoint is not None else None
    if saved is not None:
        network.load_state_dict(saved["network"])
        optimiser.load_state_dict(saved["optimiser"])
        sampler.rng.bit_generator.state = saved["numpy_rng"]
        sampler.torch_rng.set_state(saved["torch_rng"])
        torch.set_rng_state(saved["global_torch_rng"])
        first_step, smoothed = saved["step"], saved["smoothed"]
        started -= saved["elapsed"]
        yield Progress(first_step, config.steps, f"resumed at step {first_step} from {checkpoint.path}")

    def save_state(path: Any, steps_done: int) -> None:
        save_checkpoint(
            path,
            {
                "settings": settings,
                "step": steps_done,
                "network": network.state_dict(),
                "optimiser": optimiser.state_dict(),
                "numpy_rng": sampler.rng.bit_generator.state,
                "torch_rng": sampler.torch_rng.get_state(),
                "global_torch_rng": torch.get_rng_state(),
                "smoothed": smoothed,
                "elapsed": time.perf_counter() - started,
            },
        )

    def snapshot() -> ModelBundle:
        trained = copy.deepcopy(network).to("cpu", memory_format=torch.contiguous_format).eval()
        return ModelBundle(
            network=trained,
            preprocess=bundle.preprocess,
            postprocess=bundle.postprocess,
            name=bundle.name,
            provenance=dict(bundle.provenance),
        )

    for step in range(first_step, config.steps):
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(step, config)
        images, targets, masks = sampler.batch(config.batch_size)
        images = images.to(torch_device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets, masks = targets.to(torch_device), masks.to(torch_device)
        with torch.autocast(torch_device.type, dtype=autocast_dtype, enabled=config.amp):
            logits = network(images)
        loss = masked_loss(logits, targets, masks, heads)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        value = float(loss.detach())
        smoothed = value if smoothed is None else 0.95 * smoothed + 0.05 * value
        metrics = {"loss": value, "loss_smoothed": smoothed, "lr": optimiser.param_groups[0]["lr"]}
        last = step + 1 == config.steps
        if checkpoint is not None and not last and (step + 1) % checkpoint.every == 0:
            save_state(checkpoint.path, step + 1)
        if validate is not None and (
            last or (config.validate_every and (step + 1) % config.validate_every == 0)
        ):
            current = snapshot()
            metrics.update(validate(current))
            _train_mode(network, config.freeze_norm)
        if not last:
            yield Progress(step + 1, config.steps, f"step {step + 1}/{config.steps}", metrics)

    result = snapshot()
    result.provenance = trained_model(
        bundle,
        config,
        [s.name for s in samples],
        time.perf_counter() - started,
        smoothed,
        {k: v for k, v in metrics.items() if k not in ("loss", "loss_smoothed", "lr")},
        extra=provenance,
    )
    yield Progress(config.steps, config.steps, "done", metrics)
    return result
