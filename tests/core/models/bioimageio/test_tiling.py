"""bioimage.io's tiled prediction of an exported package against its whole-image prediction.

bioimageio.core 0.11 cuts a sample into blocks of ``min + n * step`` pixels, keeps ``block - 2 *
halo`` of each, starts the kept parts at multiples of that, and moves the last one of each row
and column back to end at the image's edge.  Two things make blocks differ from the whole image,
and neither is the package's to change: where the network's pooling grid falls in the last
blocks, and the percentiles of the ``scale_range`` preprocessing, which a whole-image prediction
takes over the image with the halo padded on.  A small network (2 poolings: a 4-pixel grid, a
23-pixel halo, blocks from 50 pixels) pins both down.
"""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
import torch
from bioimageio.core import create_prediction_pipeline
from bioimageio.core import predict as bioimageio_predict
from bioimageio.spec import load_description

from napari_unet.core.models.bioimageio.export import (
    export_package,
    input_size_rule,
    output_halo,
    spec_files_closed,
)
from napari_unet.core.segmentation.preprocess import CLIP_RANGE
from tests.helpers import tiny_bundle

pytestmark = pytest.mark.slow

N = 12  # blocks of 50 + 12 pixels keep 16: starts on the 4-pixel grid
HALO = 23
LOW, HIGH = 1.0, 99.8  # the package's percentiles (tiny_bundle's PreprocessConfig)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    bundle = tiny_bundle()
    # batch-norm statistics from random images: outputs that vary (as a trained network's do)
    # instead of staying near 0.5 after random initialisation
    batch_norms = [m for m in bundle.network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in batch_norms:
        norm.reset_running_stats()
        norm.momentum = None  # the plain average over the batches below
    with torch.no_grad():
        bundle.network.train()
        for seed in range(4):
            bundle.network(torch.randn(4, 1, 64, 64, generator=torch.Generator().manual_seed(seed)))
        bundle.network.eval()
    grid = (bundle.config.size_multiple, output_halo(bundle.config), input_size_rule(bundle.config))
    assert grid == (4, HALO, (50, 1))
    assert (bundle.preprocess.percentile_low, bundle.preprocess.percentile_high) == (LOW, HIGH)
    image = np.random.default_rng(0).normal(100, 10, (64, 64)).astype(np.float32)
    folder = tmp_path_factory.mktemp("tiling")
    with zipfile.ZipFile(export_package(bundle, folder / "tiny.zip", test_image=image)) as package:
        package.extractall(folder / "tiny")
    with spec_files_closed():
        description = load_description(folder / "tiny" / "rdf.yaml", perform_io_checks=False)
        return create_prediction_pipeline(description, weight_format="pytorch_state_dict")


def normalised(image: np.ndarray, over: np.ndarray) -> np.ndarray:
    """The package's preprocessing of ``image`` with the percentiles of ``over``."""
    low, high = np.percentile(over, [LOW, HIGH])
    return np.clip((image - low) / (high - low + 1e-6), *CLIP_RANGE).astype(np.float32)


def predict(pipeline, image: np.ndarray, n: int | None = None, preprocess: bool = False) -> np.ndarray:
    """bioimage.io's output for a (Y, X) image, whole or in blocks of size parameter ``n``.

    Without ``preprocess`` the image is taken as already normalised.
    """
    with spec_files_closed():
        sample = bioimageio_predict(
            model=pipeline, inputs=image[None, None], blocksize_parameter=n, skip_preprocessing=not preprocess
        )
    return sample.members["probabilities"].data.to_numpy()[0]


@pytest.fixture(scope="module")
def raw() -> np.ndarray:
    """An image whose sides (98 x 130) are no multiple of the 4-pixel grid: 2 pixels over."""
    return np.random.default_rng(1).gamma(2.0, 50.0, (98, 130)).astype(np.float32)


def test_on_the_pooling_grid_tiles_equal_the_whole_image(pipeline, raw):
    padded = normalised(np.pad(raw, ((0, 2), (0, 2)), mode="reflect"), raw)  # 100 x 132
    np.testing.assert_allclose(predict(pipeline, padded, N), predict(pipeline, padded), rtol=0, atol=1e-6)


def test_off_the_grid_only_the_last_blocks_differ_and_only_by_the_grid(pipeline, raw):
    image = normalised(raw, raw)
    whole, tiled = predict(pipeline, image), predict(pipeline, image, N)
    # the last kept part of each column starts at 98 - 16 = 82, of each row at 130 - 16 = 114:
    # off the grid by 2; every block before them starts on it and is exact
    np.testing.assert_allclose(tiled[:, :82, :114], whole[:, :82, :114], rtol=0, atol=1e-6)
    assert np.abs(tiled - whole).max() > 1e-5, "the network depends on where its grid falls"
    # the last blocks are the whole-image prediction with the grid moved by those 2 pixels (the
    # pixels put in front are beyond the halo of every pixel kept there): nothing else differs
    shifted = {
        (dy, dx): predict(pipeline, np.pad(image, ((dy, 0), (dx, 0)), mode="reflect"))[:, dy:, dx:]
        for dy, dx in ((2, 0), (0, 2), (2, 2))
    }
    np.testing.assert_allclose(tiled[:, 82:, :114], shifted[2, 0][:, 82:, :114], rtol=0, atol=1e-6)
    np.testing.assert_allclose(tiled[:, :82, 114:], shifted[0, 2][:, :82, 114:], rtol=0, atol=1e-6)
    np.testing.assert_allclose(tiled[:, 82:, 114:], shifted[2, 2][:, 82:, 114:], rtol=0, atol=1e-6)


def test_whole_images_are_normalised_with_the_halo_padded_on_and_blocks_without(pipeline, raw):
    halo_padded = np.pad(raw, HALO, mode="symmetric")  # the package declares no other padding
    assert not np.allclose(np.percentile(halo_padded, [LOW, HIGH]), np.percentile(raw, [LOW, HIGH]))
    np.testing.assert_allclose(
        predict(pipeline, raw, preprocess=True),
        predict(pipeline, normalised(raw, halo_padded)),
        rtol=0,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        predict(pipeline, raw, N, preprocess=True),
        predict(pipeline, normalised(raw, raw), N),
        rtol=0,
        atol=1e-5,
    )
