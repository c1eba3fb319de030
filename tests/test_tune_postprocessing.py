"""``scripts/tune_postprocessing.py``: each join threshold is scored at the scale it would segment at."""

from __future__ import annotations

import numpy as np
import pytest

from napari_unet.core.config import PostprocessConfig, PreprocessConfig
from napari_unet.core.segmentation.segmenter import Segmenter
from tests.helpers import load_script, tiny_bundle


def test_each_join_threshold_gets_the_outputs_at_the_scale_its_size_estimate_gives(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tune = load_script("tune_postprocessing")
    bundle = tiny_bundle(
        preprocess=PreprocessConfig(object_diameter=20.0),
        postprocess=PostprocessConfig(min_size=0, join_threshold=0.7),
    )
    seen_joins: list[float] = []

    def estimate(self: Segmenter, normalised: np.ndarray) -> float:
        # as the real estimate: objects cut in two (no joining) look half as large
        join = self.bundle.postprocess.join_threshold
        seen_joins.append(join)
        return 10.0 if join == 1.0 else 20.0

    monkeypatch.setattr(Segmenter, "estimate_diameter", estimate)
    images = [np.random.default_rng(i).random((48, 40)).astype(np.float32) for i in range(2)]
    outputs = tune.network_outputs(Segmenter(bundle), images, [1.0, 0.7, 0.5])
    assert seen_joins == [1.0, 1.0, 0.7, 0.7, 0.5, 0.5]
    assert [o.scale for o in outputs[1.0]] == [2.0, 2.0]
    assert [o.scale for o in outputs[0.7]] == [1.0, 1.0] == [o.scale for o in outputs[0.5]]
    assert outputs[0.7][0] is outputs[0.5][0]  # the network ran once per image and scale
    assert all(o.probabilities.shape[-2:] == (48, 40) for o in outputs[1.0])
    assert bundle.postprocess.join_threshold == 0.7  # the model's own defaults are left as they were
