from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet.core.config import TrainingConfig
from napari_unet.core.progress import run
from napari_unet.core.training.checkpoint import Checkpointing, load_checkpoint, run_settings
from napari_unet.core.training.loop import train
from napari_unet.core.training.samples import prepare_sample
from tests.helpers import tiny_bundle

CONFIG = TrainingConfig(steps=12, batch_size=2, crop_size=32, learning_rate=3e-3, amp=False, seed=4)


def discs_sample(bundle, seed: int = 0):  # noqa: ANN001, ANN201
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    labels = np.zeros((64, 64), np.uint16)
    for index in range(1, 7):
        cy, cx = rng.integers(8, 56, size=2)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < 25] = index
    image = (labels > 0) * 200.0 + rng.normal(20, 5, labels.shape)
    return prepare_sample(image, labels, bundle.config, bundle.preprocess, name=f"discs{seed}")


def stop_after(job, steps: int) -> None:  # noqa: ANN001
    """Iterate a training job until ``steps`` steps are done, then stop it as a killed run would."""
    for record in job:
        if record.step >= steps:
            job.close()
            return


def test_a_resumed_run_ends_with_the_model_of_an_uninterrupted_one(tmp_path: Path) -> None:
    bundle = tiny_bundle()
    samples = [discs_sample(bundle, seed) for seed in range(2)]
    whole = run(train(bundle, samples, CONFIG, device="cpu"))

    checkpoint = Checkpointing(tmp_path / "model.pt.checkpoint", every=5)
    stop_after(train(bundle, samples, CONFIG, device="cpu", checkpoint=checkpoint), 7)
    assert (
        load_checkpoint(checkpoint.path, run_settings(CONFIG, bundle.name, ["discs0", "discs1"]))["step"] == 5
    )

    messages = []
    resumed = run(
        train(bundle, samples, CONFIG, device="cpu", checkpoint=checkpoint),
        lambda r: messages.append(r.message),
    )
    assert messages[0] == f"resumed at step 5 from {checkpoint.path}"
    for name, value in whole.network.state_dict().items():
        torch.testing.assert_close(resumed.network.state_dict()[name], value, msg=name)


def test_a_checkpoint_of_other_settings_is_refused_with_what_differs(tmp_path: Path) -> None:
    bundle = tiny_bundle()
    samples = [discs_sample(bundle)]
    checkpoint = Checkpointing(tmp_path / "model.pt.checkpoint", every=5)
    stop_after(train(bundle, samples, CONFIG, device="cpu", checkpoint=checkpoint), 6)
    other = replace(CONFIG, learning_rate=1e-3)
    with pytest.raises(
        ValueError, match=r"model\.pt\.checkpoint: .*learning_rate 0\.003 in the checkpoint, 0\.001 now"
    ):
        run(train(bundle, samples, other, device="cpu", checkpoint=checkpoint))


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt.checkpoint"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="model.pt.checkpoint: not a readable training checkpoint"):
        load_checkpoint(path, run_settings(CONFIG, "tiny", []))
