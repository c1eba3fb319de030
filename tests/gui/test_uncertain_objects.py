""" "Next uncertain object" as a person uses it: segment, click, the view centres on the object.

Image first, then the dock from the Plugins menu, buttons by their text; what
the button did is read from the viewer's camera, the Labels layer and the line
under the button.
"""

from __future__ import annotations

import re

import numpy as np

from napari_unet.gui.uncertain_objects import BUTTON_TEXT, camera

SHOWN = re.compile(r"object (\d+): uncertainty (\d\.\d\d) \((\d+) of (\d+) on this plane; [a-z ]+\)")


def said(widget) -> str:
    """The line under the button."""
    return widget.corrections.uncertain.text


def click_next(person, widget) -> tuple[int, float, int, int]:
    """Click the button, wait for the view to move; returns (label, uncertainty, rank, count) as shown."""
    before = said(widget)
    person.click(widget, BUTTON_TEXT)
    person.qtbot.waitUntil(
        lambda: said(widget) != before and SHOWN.fullmatch(said(widget)) is not None, timeout=120_000
    )
    label, score, rank, count = SHOWN.fullmatch(said(widget)).groups()
    return int(label), float(score), int(rank), int(count)


def centroid(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


def test_next_uncertain_object_centres_the_view_on_each_object_in_turn(
    person, make_napari_viewer, nuclei_image, shown_messages
):
    viewer = make_napari_viewer()
    viewer.add_image(nuclei_image, name="cells")
    _, widget = person.open_widget(viewer)
    person.click(widget, BUTTON_TEXT)
    assert said(widget).startswith("Segment this plane first")

    person.segment(widget)
    labels = viewer.layers["cells labels"]
    objects = set(np.unique(labels.data)) - {0}
    assert len(objects) >= 5
    camera(viewer).zoom = 4.0  # looking closely, somewhere
    camera(viewer).center = (0.0, 0.0)

    first, first_score, rank, count = click_next(person, widget)
    assert (rank, count) == (1, len(objects))
    assert labels.selected_label == first and first in objects
    assert viewer.layers.selection.active is labels  # ready for the fill or brush tool
    np.testing.assert_allclose(camera(viewer).center[-2:], centroid(labels.data == first), atol=1e-6)
    assert camera(viewer).zoom == 4.0

    second, second_score, rank, _ = click_next(person, widget)
    assert rank == 2 and second != first and second_score <= first_score
    np.testing.assert_allclose(camera(viewer).center[-2:], centroid(labels.data == second), atol=1e-6)

    # the person erases the second object: the list goes on without it, then starts again
    labels.fill(tuple(np.argwhere(labels.data == second)[0]), 0)
    shown = [first, second]
    scores = [first_score, second_score]
    while True:
        label, score, rank, _ = click_next(person, widget)
        if rank == 1:
            break
        shown.append(label)
        scores.append(score)
        np.testing.assert_allclose(camera(viewer).center[-2:], centroid(labels.data == label), atol=1e-6)
    assert label == first, "after the last object the list starts again from the most uncertain"
    assert sorted(shown) == sorted(objects) and shown.count(second) == 1
    assert scores == sorted(scores, reverse=True)


def test_in_a_stack_the_shown_plane_is_ranked_and_the_view_stays_on_it(
    person, make_napari_viewer, nuclei_image, shown_messages
):
    stack = np.stack([nuclei_image, nuclei_image[::-1], nuclei_image[:, ::-1]])
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="stack", scale=(2.0, 0.5, 0.5))
    _, widget = person.open_widget(viewer)
    viewer.dims.set_current_step(0, 2)
    person.segment(widget)  # the current plane
    labels = viewer.layers["stack labels"]
    assert not labels.data[:2].any() and labels.data[2].any()

    label, _, rank, count = click_next(person, widget)
    assert rank == 1 and count == len(set(np.unique(labels.data[2])) - {0})
    assert labels.selected_label == label
    assert viewer.dims.current_step[0] == 2
    np.testing.assert_allclose(camera(viewer).center[-2:], centroid(labels.data[2] == label) * 0.5, atol=1e-6)
