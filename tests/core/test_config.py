import json

import pytest

from napari_unet.core.config import (
    HEAD_NAMES,
    InferenceConfig,
    ModelConfig,
    PostprocessConfig,
    PreprocessConfig,
    TrainingConfig,
    from_dict,
    to_dict,
)


@pytest.mark.parametrize("estimate", [None, 0, 0.0])
def test_diameter_zero_or_none_means_estimate_it(estimate: float | None) -> None:
    config = InferenceConfig(diameter=estimate)
    assert config.diameter is None
    assert config == InferenceConfig()
    assert from_dict(InferenceConfig, to_dict(config)) == config


def test_a_positive_diameter_is_kept_and_a_negative_one_refused() -> None:
    assert InferenceConfig(diameter=17.5).diameter == 17.5
    with pytest.raises(ValueError, match=r"diameter must be None or >= 0 \(0: estimate it\), got -1"):
        InferenceConfig(diameter=-1)


@pytest.mark.parametrize(
    "cls", [ModelConfig, PreprocessConfig, PostprocessConfig, InferenceConfig, TrainingConfig]
)
def test_every_config_round_trips_through_a_plain_dictionary(cls: type) -> None:
    config = cls()
    data = to_dict(config)
    assert json.loads(json.dumps(data)) == data  # what model files store
    assert from_dict(cls, data) == config


def test_unknown_fields_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"PostprocessConfig: unknown field\(s\) \['min_sise'\]"):
        from_dict(PostprocessConfig, {"min_sise": 3})


def test_a_model_needs_a_foreground_head_and_known_heads_once() -> None:
    config = ModelConfig(heads=["foreground", "distance"], depth=3)
    assert config.heads == ("foreground", "distance") and config.size_multiple == 8
    assert set(HEAD_NAMES) == {"foreground", "boundary", "distance"}
    for heads, reason in [
        (("boundary",), "needs a 'foreground' head"),
        (("foreground", "colour"), "unknown head 'colour'"),
        (("foreground", "foreground"), "duplicate heads"),
        ((), "at least one output head"),
    ]:
        with pytest.raises(ValueError, match=reason):
            ModelConfig(heads=heads)
    with pytest.raises(ValueError, match="depth must be between 1 and 6, got 7"):
        ModelConfig(depth=7)


@pytest.mark.parametrize(
    ("cls", "changes", "reason"),
    [
        (PreprocessConfig, {"percentile_low": 99.9, "percentile_high": 99.8}, "low < high"),
        (PreprocessConfig, {"object_diameter": 0}, "object_diameter must be > 0"),
        (PostprocessConfig, {"foreground_threshold": 1.0}, r"foreground_threshold must be in \(0, 1\)"),
        (PostprocessConfig, {"min_size": -1}, "min_size must be >= 0"),
        (PostprocessConfig, {"join_threshold": 0.0}, r"join_threshold must be in \(0, 1\]"),
        (PostprocessConfig, {"object_probability": 1.0}, r"object_probability must be in \[0, 1\)"),
        (InferenceConfig, {"tile_size": 8}, "tile_size must be >= 16"),
        (InferenceConfig, {"tile_overlap": 768}, r"tile_overlap must be in \[0, tile_size\)"),
        (InferenceConfig, {"batch_size": 0}, "batch_size must be None or >= 1"),
        (TrainingConfig, {"steps": 0}, "steps must be >= 1"),
        (TrainingConfig, {"crop_size": 16}, "crop_size must be >= 32"),
        (TrainingConfig, {"optimizer": "adam"}, "unknown optimizer 'adam'"),
        (TrainingConfig, {"scale_jitter": 0.5}, "scale_jitter must be >= 1"),
    ],
)
def test_out_of_range_settings_are_refused_with_the_reason(cls: type, changes: dict, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        cls(**changes)
    assert from_dict(cls, {}) == cls()  # defaults are valid
