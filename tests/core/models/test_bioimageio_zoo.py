"""The model zoo's own tests on every bundled model's package, where napari-unet cannot be imported.

``bioimageio.core.test_model`` (what ``bioimageio test PACKAGE.zip`` runs) reproduces the test
output from the test input and runs inputs of several sizes and batch sizes, for each weight
format.  It runs in a subprocess whose import system refuses ``napari_unet``, so passing proves
that a package needs only torch and a bioimage.io consumer.  The same subprocess predicts a
520 x 696 image whole and in tiles through bioimage.io's own prediction.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.core.models.bioimageio.export import export_package
from napari_unet.core.models.registry import BUNDLED_MODELS, bundled_model_path, load_model

pytestmark = pytest.mark.slow

WITHOUT_NAPARI_UNET = textwrap.dedent(
    """
    import importlib.abc
    import sys


    class NoNapariUnet(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "napari_unet":
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None


    sys.meta_path.insert(0, NoNapariUnet())
    """
)

ZOO_TESTS = textwrap.dedent(
    """
    import json
    import sys

    import numpy as np
    import torch
    from bioimageio.core import create_prediction_pipeline, predict, test_model
    from bioimageio.spec import load_description

    torch.set_num_threads(2)
    packages, tiling_package, tiling_image, report = sys.argv[1:5]
    results = {"tests": {}, "tiling": {}}
    for package in packages.split(","):
        summary = test_model(package)
        results["tests"][package] = {
            "status": summary.status,
            "passed": [d.name for d in summary.details if d.status == "passed"],
            "failed": [d.name + ": " + "; ".join(e.msg for e in d.errors) for d in summary.details
                       if d.status == "failed"],
        }

    raw = np.load(tiling_image)
    padded = np.pad(raw, ((0, -raw.shape[0] % 16), (0, -raw.shape[1] % 16)), mode="reflect")
    model = load_description(tiling_package, perform_io_checks=False)
    pipeline = create_prediction_pipeline(model, weight_format="pytorch_state_dict")


    steps = {step.id: step.kwargs for step in model.inputs[0].preprocessing}
    scaling, clipping = steps["scale_range"], steps["clip"]


    def preprocessed(image):
        # the description's preprocessing, over the image as given: whole-image prediction would
        # take its percentiles over the image with the halo padded on (a bioimage.io detail)
        low, high = np.percentile(image, [scaling.min_percentile, scaling.max_percentile])
        scaled = (image - low) / (high - low + scaling.eps)
        return np.clip(scaled, clipping.min, clipping.max).astype(np.float32)[None, None]


    def probabilities(image, n=None, skip_preprocessing=True):
        sample = predict(
            model=pipeline, inputs=image, blocksize_parameter=n, skip_preprocessing=skip_preprocessing
        )
        return sample.members["probabilities"].data.to_numpy()[0]


    for name, image in (("raw", raw), ("padded", padded)):
        # whole image; blocks of 230 + 160 px, on the 16 px pooling grid
        outputs = [probabilities(preprocessed(image)), probabilities(preprocessed(image), 160)]
        if name == "raw":  # and once with bioimage.io's own preprocessing
            outputs.append(probabilities(image[None, None], 160, skip_preprocessing=False))
        np.save(f"{report}.{name}.npy", np.stack(outputs))
        results["tiling"][name] = list(outputs[0].shape)
    results["napari_unet_imported"] = any(m.split(".")[0] == "napari_unet" for m in sys.modules)
    with open(report, "w") as file:
        json.dump(results, file)
    """
)


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("zoo")
    return {
        name: export_package(load_model(bundled_model_path(name)), folder / f"{name}.zip")
        for name in BUNDLED_MODELS
    }


@pytest.fixture(scope="module")
def zoo_run(packages, nuclei_val, tmp_path_factory) -> tuple[dict, Path]:
    folder = tmp_path_factory.mktemp("zoo-run")
    image = next(
        image
        for image in (tifffile.imread(path) for path in sorted((nuclei_val / "images").glob("*.tif")))
        if image.shape == (520, 696)
    )
    np.save(folder / "image.npy", image.astype(np.float32))
    report = folder / "report.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            WITHOUT_NAPARI_UNET + ZOO_TESTS,
            ",".join(str(packages[name]) for name in BUNDLED_MODELS),
            str(packages["nuclei"]),
            str(folder / "image.npy"),
            str(report),
        ],
        cwd=folder,  # not the repository: nothing of napari-unet on the path
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(report.read_text()), report


def test_blocker_refuses_napari_unet(tmp_path):
    completed = subprocess.run(
        [sys.executable, "-c", WITHOUT_NAPARI_UNET + "import napari_unet.core.models.network"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert completed.returncode == 1 and "No module named 'napari_unet' (blocked" in completed.stderr


@pytest.mark.parametrize("name", BUNDLED_MODELS)
def test_bioimageio_test_model_passes_both_weight_formats_without_napari_unet(name, packages, zoo_run):
    results, _ = zoo_run
    assert not results["napari_unet_imported"]
    result = results["tests"][str(packages[name])]
    assert result["status"] == "passed", result["failed"]
    for weights in ("pytorch_state_dict", "torchscript"):
        assert f"Reproduce test outputs from test inputs ({weights})" in result["passed"]
        sizes = [p for p in result["passed"] if p.startswith(f"Run {weights} inference for inputs with")]
        assert len(sizes) == 6, f"batch sizes 1 and 2, size parameters 0, 1, 2: {sizes}"


def test_a_520_by_696_image_is_predicted_whole_and_in_tiles(zoo_run):
    results, report = zoo_run
    raw_whole, raw_tiled, raw_tiled_by_bioimageio = np.load(f"{report}.raw.npy")
    padded_whole, padded_tiled = np.load(f"{report}.padded.npy")
    assert results["tiling"]["raw"] == [3, 520, 696]
    np.testing.assert_allclose(raw_tiled_by_bioimageio, raw_tiled, rtol=0, atol=1e-4)

    # padded to the pooling grid (528 x 704), every block starts on the whole image's grid
    np.testing.assert_allclose(padded_tiled, padded_whole, rtol=0, atol=1e-5)
    assert (padded_whole[0] > 0.5).sum() > 10_000, "the image has nuclei"

    # as it is, the blocks up to the last of each row and column are on the grid and exact; the
    # last one is shifted back to end at the edge (520 = 2 x 176 + 168), off the grid
    kept = 520 - 176, 696 - 176
    np.testing.assert_allclose(
        raw_tiled[:, : kept[0], : kept[1]], raw_whole[:, : kept[0], : kept[1]], rtol=0, atol=1e-5
    )
    flipped = (raw_tiled[0] > 0.5) != (raw_whole[0] > 0.5)
    assert flipped.mean() < 1e-3, "off the grid the outputs differ only slightly"
