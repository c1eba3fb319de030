import pytest
import torch

from napari_unet.core.config import ModelConfig
from napari_unet.core.models.network import UNet


@pytest.mark.parametrize(
    ("config", "size"),
    [
        (ModelConfig(base_width=4, depth=1), (17, 9)),
        (ModelConfig(base_width=4, depth=3, norm="group"), (100, 70)),
        (ModelConfig(base_width=4, depth=4, norm="instance"), (64, 64)),
        (ModelConfig(base_width=2, depth=4, norm="none", heads=("foreground",)), (1, 1)),
        (ModelConfig(base_width=2, depth=2, in_channels=3, heads=("foreground", "boundary")), (5, 300)),
    ],
)
def test_output_shape_matches_input_for_any_size(config: ModelConfig, size: tuple[int, int]) -> None:
    net = UNet(config).eval()
    with torch.inference_mode():
        out = net(torch.rand(2, config.in_channels, *size))
    assert out.shape == (2, len(config.heads), *size)
    assert torch.isfinite(out).all()


def test_skip_connections_carry_fine_detail() -> None:
    # a 1-pixel change must reach the output at that pixel in one forward pass
    torch.manual_seed(0)
    net = UNet(ModelConfig(base_width=8, depth=3, norm="none")).eval()
    x = torch.rand(1, 1, 32, 32)
    with torch.inference_mode():
        base = net(x)
        x[0, 0, 10, 10] += 1.0
        changed = net(x)
    assert (changed - base).abs()[0, :, 9:12, 9:12].max() > 0


def test_bad_input_gives_clear_error() -> None:
    net = UNet(ModelConfig(base_width=2, depth=2))
    with pytest.raises(ValueError, match="1 input channel"):
        net(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, C, Y, X\)"):
        net(torch.zeros(16, 16))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth": 0}, "depth"),
        ({"heads": ("boundary",)}, "foreground"),
        ({"heads": ("foreground", "colour")}, "unknown head"),
        ({"norm": "layer"}, "norm"),
    ],
)
def test_config_rejects_invalid_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)
