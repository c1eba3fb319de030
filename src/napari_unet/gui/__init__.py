"""The napari plugin: the dock widget, its workers and layer adapters, sample data.

The only subpackage that imports napari, qtpy or magicgui.
"""
