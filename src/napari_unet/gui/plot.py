"""A small live loss plot: a QWidget that paints a polyline (no matplotlib)."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPaintEvent, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget


class LossPlot(QWidget):
    """Training loss against step, drawn on a log scale, updated as values arrive.

    Parameters
    ----------
    parent : QWidget, optional

    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.values: list[float] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Training loss per step (log scale)")

    def sizeHint(self) -> QSize:  # noqa: D102 (Qt override)
        return QSize(240, 90)

    def minimumSizeHint(self) -> QSize:  # noqa: D102 (Qt override)
        return QSize(120, 90)

    def append(self, value: float) -> None:
        """Add one loss value and repaint."""
        if math.isfinite(value):
            self.values.append(float(value))
            self.update()

    def clear(self) -> None:
        """Forget all values."""
        self.values.clear()
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:  # noqa: D102 (Qt override)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        box = self.rect().adjusted(4, 14, -4, -4)
        painter.setPen(QPen(QColor(128, 128, 128), 1))
        painter.drawRect(box)
        if not self.values:
            painter.drawText(self.rect().adjusted(6, 0, 0, 0), Qt.AlignmentFlag.AlignLeft, "loss")
            return
        logs = [math.log10(max(v, 1e-6)) for v in self.values]
        low, high = min(logs), max(logs)
        span = high - low or 1.0
        count = max(len(logs) - 1, 1)
        points = QPolygonF(
            [
                QPointF(
                    box.left() + box.width() * i / count,
                    box.bottom() - box.height() * (value - low) / span,
                )
                for i, value in enumerate(logs)
            ]
        )
        painter.setPen(QPen(QColor(255, 165, 0), 1.5))
        painter.drawPolyline(points)
        painter.setPen(QPen(QColor(200, 200, 200), 1))
        caption = f"loss {self.values[-1]:.3g}  (step {len(self.values)})"
        painter.drawText(self.rect().adjusted(6, 0, 0, 0), Qt.AlignmentFlag.AlignLeft, caption)
