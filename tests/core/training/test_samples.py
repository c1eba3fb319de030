import numpy as np
import pytest
import torch
from skimage.measure import regionprops

from napari_unet.core.config import HEAD_NAMES, ModelConfig, PreprocessConfig
from napari_unet.core.training.samples import CropSampler, TrainingSample, prepare_sample

MODEL = ModelConfig(base_width=4, depth=2)


def squares(size: int = 64, edge: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """An image of bright squares of ``edge`` pixels and their labels."""
    labels = np.zeros((size, size), np.int32)
    for number, top in enumerate(range(4, size - edge, 2 * edge), start=1):
        labels[top : top + edge, 4 : 4 + edge] = number
    image = np.where(labels > 0, 1000, 100).astype(np.uint16)
    return image, labels


def test_a_sample_is_rescaled_so_its_objects_have_the_models_diameter() -> None:
    image, labels = squares(edge=10)  # equivalent-circle diameter 11.28 px
    diameter = float(np.sqrt(4 * 100 / np.pi))
    sample = prepare_sample(image, labels, MODEL, PreprocessConfig(object_diameter=2 * diameter), name="a")
    assert sample.image.shape == (1, 128, 128) and sample.image.dtype == np.float32
    assert sample.targets.shape == (len(HEAD_NAMES), 128, 128)
    assert sample.mask.shape == (128, 128) and (sample.mask == 1).all()
    assert sample.targets[0].sum() == pytest.approx(4 * (labels > 0).sum(), rel=0.05)
    assert sample.name == "a"
    native = prepare_sample(image, labels, MODEL, PreprocessConfig(object_diameter=40, rescale=False))
    assert native.image.shape == (1, 64, 64)
    np.testing.assert_array_equal(native.targets[0], labels > 0)


def test_only_reviewed_pixels_are_measured_and_supervised() -> None:
    image, labels = squares(edge=10)
    for number, top in enumerate((0, 22, 44), start=9):  # large objects outside the reviewed part
        labels[top : top + 20, 30:60] = number  # must not set the size
    mask = np.zeros(labels.shape, bool)
    mask[:, :20] = True
    diameter = float(np.sqrt(4 * 100 / np.pi))
    sample = prepare_sample(image, labels, MODEL, PreprocessConfig(object_diameter=diameter), mask=mask)
    assert sample.image.shape == (1, 64, 64)  # the reviewed squares are already the model's size
    everything = prepare_sample(image, labels, MODEL, PreprocessConfig(object_diameter=diameter))
    assert everything.image.shape[-1] < 40  # measured on all objects, the image would shrink
    np.testing.assert_array_equal(sample.mask, mask.astype(np.float32))


def test_colour_images_fit_the_models_channels_and_shapes_must_match() -> None:
    image, labels = squares()
    rgb = np.stack([image, image // 2, image // 4])
    sample = prepare_sample(rgb, labels, MODEL, PreprocessConfig(rescale=False))
    assert sample.image.shape == (1, 64, 64)
    with pytest.raises(ValueError, match=r"plate1: image shape \(64, 64\) != labels shape \(32, 32\)"):
        prepare_sample(image, labels[:32, :32], MODEL, PreprocessConfig(), name="plate1")


def sample_of(size: int = 96) -> TrainingSample:
    image, labels = squares(size=size, edge=12)
    return prepare_sample(image, labels, MODEL, PreprocessConfig(rescale=False))


def test_crops_have_the_batch_shapes_and_a_seed_repeats_them() -> None:
    images, targets, masks = CropSampler([sample_of()], 32, seed=3).batch(4)
    assert images.shape == (4, 1, 32, 32) and targets.shape == (4, len(HEAD_NAMES), 32, 32)
    assert masks.shape == (4, 1, 32, 32)
    assert targets.min() >= 0 and targets.max() <= 1
    assert set(torch.unique(masks).tolist()) <= {0.0, 1.0}
    again = CropSampler([sample_of()], 32, seed=3).batch(4)
    other = CropSampler([sample_of()], 32, seed=4).batch(4)
    for a, b in zip((images, targets, masks), again, strict=True):
        torch.testing.assert_close(a, b)
    assert not torch.equal(images, other[0])


def test_crops_keep_image_and_targets_aligned() -> None:
    """Flips, rotations, scaling and elastic deformation move image and targets together."""
    images, targets, _ = CropSampler([sample_of()], 32, scale_jitter=1.5, elastic=4.0, seed=0).batch(8)
    bright = images[:, 0] > 0.5
    foreground = targets[:, 0] > 0.5
    assert (bright == foreground).float().mean() > 0.95


def test_no_samples_is_an_error() -> None:
    with pytest.raises(ValueError, match="no training samples"):
        CropSampler([], 32)


def test_colour_crops_get_channels_apart_and_grey_crops_stay_one_channel() -> None:
    """Stains differ between labs: identical colour channels come out a little apart; grey has nothing to split."""
    image, labels = squares()
    colour = prepare_sample(
        np.stack([image] * 3),
        labels,
        ModelConfig(in_channels=3, base_width=4, depth=2),
        PreprocessConfig(rescale=False),
    )
    crops, _, _ = CropSampler([colour], 32, seed=1).batch(8)
    assert crops.shape[1] == 3
    spread = (crops[:, 0] - crops[:, 1]).abs().amax(dim=(1, 2))
    assert (spread > 0.01).all()  # every crop: the channels differ somewhere


def test_a_quarter_of_the_crops_are_blurred() -> None:
    """Out-of-focus images: some crops lose fine detail, the rest keep it."""
    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.normal(size=(4, 1, 32, 32)).astype(np.float32))
    draws = torch.tensor([0.05, 0.2, 0.5, 0.9]).view(4, 1, 1, 1)
    blurred = CropSampler._blur(images, draws)

    def roughness(batch: torch.Tensor) -> torch.Tensor:
        return (batch[..., 1:] - batch[..., :-1]).abs().mean(dim=(1, 2, 3))

    assert (roughness(blurred[:2]) < 0.6 * roughness(images[:2])).all()
    torch.testing.assert_close(blurred[2:], images[2:])
    torch.testing.assert_close(blurred.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)), atol=0.05, rtol=0)


def disc_sample(size: int = 64, radius: int = 10) -> TrainingSample:
    """One bright disc in the middle of a dark image."""
    yy, xx = np.mgrid[:size, :size]
    labels = (((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < radius**2).astype(np.int32)
    image = np.where(labels > 0, 1000, 100).astype(np.uint16)
    return prepare_sample(image, labels, MODEL, PreprocessConfig(rescale=False))


def disc_shapes(aspect_jitter: float) -> tuple[float, float]:
    """Median elongation (major / minor axis) and area of the disc, in crops twice the image's size."""
    _, targets, _ = CropSampler(
        [disc_sample()], 128, scale_jitter=1.0, elastic=0.0, seed=5, aspect_jitter=aspect_jitter
    ).batch(32)
    elongations, areas = [], []
    for foreground in targets[:, 0].numpy() > 0.5:
        (region,) = regionprops(foreground.astype(np.int32))  # the whole disc is in every crop
        elongations.append(region.axis_major_length / region.axis_minor_length)
        areas.append(region.area)
    return float(np.median(elongations)), float(np.median(areas))


def test_aspect_jitter_stretches_objects_and_keeps_their_area() -> None:
    round_elongation, round_area = disc_shapes(1.0)
    stretched_elongation, stretched_area = disc_shapes(1.5)
    assert round_elongation < 1.1
    assert stretched_elongation > 1.15  # log-uniform up to 1.5 : 1, median sqrt(1.5) = 1.22
    assert stretched_area == pytest.approx(round_area, rel=0.1)


def test_no_aspect_jitter_leaves_a_seeds_crops_as_they_were() -> None:
    plain = CropSampler([sample_of()], 32, seed=3).batch(4)
    unstretched = CropSampler([sample_of()], 32, seed=3, aspect_jitter=1.0).batch(4)
    for a, b in zip(plain, unstretched, strict=True):
        torch.testing.assert_close(a, b)
