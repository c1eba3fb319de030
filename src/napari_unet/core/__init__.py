"""Headless core of napari-unet: NumPy and PyTorch only, never napari, Qt or magicgui."""
