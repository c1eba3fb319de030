"""How the network runs, shared by the segmentation and batch widgets: object diameter, augmentation."""

from __future__ import annotations

from magicgui.widgets import CheckBox, FloatSpinBox


class DiameterBox(FloatSpinBox):
    """Object diameter in pixels, as ``InferenceConfig.diameter``: 0, shown as "auto", estimates it.

    Parameters
    ----------
    tooltip : str
        What the diameter applies to in this widget.

    """

    def __init__(self, tooltip: str) -> None:
        super().__init__(label="Diameter (px)", min=0.0, max=2000.0, step=1.0, value=0.0, tooltip=tooltip)
        self.native.setDecimals(1)
        self.native.setSpecialValueText("auto")  # shown at 0

    @property
    def diameter(self) -> float | None:
        """The diameter given, or ``None`` to estimate it (what 0 means everywhere)."""
        return float(self.value) or None


class AugmentBox(CheckBox):
    """Test-time augmentation on or off (``InferenceConfig.augment``)."""

    def __init__(self) -> None:
        super().__init__(
            text="Augment (average over flips, 4x slower)",
            value=False,
            tooltip="Test-time augmentation: steadier outlines, four times the network time.",
        )
