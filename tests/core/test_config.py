import pytest

from napari_unet.core.config import InferenceConfig, from_dict, to_dict


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
