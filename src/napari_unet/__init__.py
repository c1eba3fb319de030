"""napari-unet: segment, correct and fine-tune a U-Net inside napari.

Importing this package loads neither torch, Qt nor napari.
"""

__version__ = "0.1.0"
