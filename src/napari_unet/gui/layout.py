"""Pieces that keep a dock small: a scroll area, sections that fold, text that wraps instead of widening.

napari gives a dock widget the width its contents ask for, and grows the whole
window to fit its height.  So everything here asks for little: long status text
wraps (file names and paths included) and never widens the dock, combo boxes do
not size themselves to their longest entry, and the dock's contents scroll.
"""

from __future__ import annotations

import re
from typing import Any

from magicgui.widgets import Container, Label
from qtpy.QtCore import QEvent, QSize, Qt
from qtpy.QtWidgets import QApplication, QComboBox, QFrame, QScrollArea, QSizePolicy, QToolButton, QWidget

DOCK_WIDTH = 380
"""Width (pixels) a dock asks for; a person can still widen it."""

DOCK_MIN_HEIGHT = 200
"""Height (pixels) a dock keeps at least when another dock shares its side of the window."""

COMBO_CHARACTERS = 14
"""Characters a combo box asks room for; longer entries are elided (the list shows them whole)."""

_BREAK_AFTER = re.compile(r"([/\\_.\-:,;=])")
_LONG_RUN = re.compile(r"[^\s\u200b]{16}")
_ZERO_WIDTH_SPACE = "\u200b"


def breakable(text: str) -> str:
    r"""``text`` with invisible break opportunities in long words (paths, file names, hashes).

    A zero-width space follows every separator (``/ \ _ . - : , ; =``) and
    every 16 characters of a run without one, so a label can wrap anywhere
    a long word would otherwise widen it.
    """
    words = []
    for word in text.split(" "):
        if len(word) > 16:
            word = _BREAK_AFTER.sub(r"\1" + _ZERO_WIDTH_SPACE, word)
            word = _LONG_RUN.sub(lambda match: match.group(0) + _ZERO_WIDTH_SPACE, word)
        words.append(word)
    return " ".join(words)


class TextLine(Label):
    """A status label that wraps, never widens its dock, and shows its whole text as a tooltip.

    ``value`` is the text as given; what is drawn has break opportunities in
    long words (see :func:`breakable`).
    """

    _text = ""

    def __init__(self, value: str = "", **kwargs: Any) -> None:
        super().__init__(value=value, **kwargs)
        self.native.setWordWrap(True)
        self.native.setTextFormat(Qt.TextFormat.PlainText)
        # Ignored: the layout gives it the dock's width; its text's width asks for nothing
        policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.native.setSizePolicy(policy)
        self.native.setMinimumWidth(1)

    def get_value(self) -> str:
        """The text as given (without the break opportunities added for drawing)."""
        return self._text

    def set_value(self, value: Any) -> None:
        """Show ``value``; its whole text is also the tooltip."""
        self._text = str(value)
        super().set_value(breakable(self._text))
        self.native.setToolTip(self._text)


class Section(Container):
    """A titled part of a dock that a person can fold (click the title).

    Parameters
    ----------
    title : str
    body : Container
        The widgets shown when unfolded.
    expanded : bool
        Unfolded at first.
    tooltip : str
        Shown on the title.

    """

    def __init__(self, title: str, body: Container, expanded: bool, tooltip: str = "") -> None:
        super().__init__(widgets=[body], labels=False)
        self.margins = (0, 0, 0, 0)
        self.body = body
        self.title = title
        self._chosen = False  # the person folded or unfolded it: the widget no longer does
        self.header = QToolButton()
        self.header.setText(title)
        self.header.setToolTip(tooltip or f"Show or hide {title}")
        self.header.setCheckable(True)
        self.header.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.header.setAutoRaise(True)
        self.header.setStyleSheet("QToolButton { font-weight: bold; border: none; }")
        self.header.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.header.toggled.connect(self._show_body)
        self.header.clicked.connect(lambda *_: setattr(self, "_chosen", True))
        self.native.layout().insertWidget(0, self.header)
        self.header.setChecked(expanded)
        self._show_body(expanded)

    @property
    def expanded(self) -> bool:
        """Whether the section is unfolded."""
        return self.header.isChecked()

    @expanded.setter
    def expanded(self, value: bool) -> None:
        self.header.setChecked(value)

    def unfold_unless_chosen(self) -> None:
        """Unfold, once the section becomes useful, unless the person has folded or unfolded it."""
        if not self._chosen:
            self.expanded = True

    def _show_body(self, expanded: bool) -> None:
        self.header.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.body.visible = expanded


def narrow_combo_boxes(root: QWidget) -> None:
    """Make every combo box under ``root`` ask for :data:`COMBO_CHARACTERS`, not its longest entry."""
    for combo in root.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(COMBO_CHARACTERS)


class _DockScrollArea(QScrollArea):
    """Scrolls vertically; as wide as its contents need, at least :data:`DOCK_MIN_HEIGHT` high.

    Asks for :data:`DOCK_WIDTH`.
    """

    def minimumSizeHint(self) -> QSize:  # noqa: D102 (Qt override)
        hint = super().minimumSizeHint()
        body = self.widget()
        if body is not None:
            scroll_bar = self.verticalScrollBar().sizeHint().width()
            hint.setWidth(body.minimumSizeHint().width() + scroll_bar + 2 * self.frameWidth())
            hint.setHeight(min(DOCK_MIN_HEIGHT, body.sizeHint().height()))
        return hint

    def sizeHint(self) -> QSize:  # noqa: D102 (Qt override)
        hint = super().sizeHint()
        hint.setWidth(max(DOCK_WIDTH, self.minimumSizeHint().width()))
        return hint


def scrolling(body: Container) -> QScrollArea:
    """A vertical scroll area around ``body`` (its widgets packed at the top), for a dock.

    Nothing is cut off at the sides (no horizontal scroll bar: the area is as
    wide as ``body`` needs); the dock, not the contents, decides the height.
    """
    narrow_combo_boxes(body.native)
    body.native.layout().addStretch(1)
    area = _DockScrollArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    area.setWidget(body.native)
    return area


def bring_into_view(widget: QWidget) -> None:
    """Scroll the dock that holds ``widget`` so that ``widget`` shows whole (if a person could see it).

    Layout changes still pending (a status line that now takes more rows, a
    progress bar just hidden) are applied first, so it is the widget's final
    place that is shown.  Nothing happens if ``widget`` is not in a scroll
    area or is hidden (in a folded section).
    """
    area = widget.parentWidget()
    while area is not None and not isinstance(area, QScrollArea):
        area = area.parentWidget()
    if area is None or not widget.isVisibleTo(area):
        return
    QApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
    area.ensureWidgetVisible(widget)
