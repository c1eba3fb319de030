"""The npe2 manifest: one file, inside the package, registered by the entry point."""

from importlib import resources
from importlib.metadata import entry_points
from pathlib import Path

from npe2 import PluginManifest


def registered_manifest() -> Path:
    """The file napari finds through the ``napari.manifest`` entry point."""
    (entry,) = [e for e in entry_points(group="napari.manifest") if e.name == "napari-unet"]
    package, _, name = entry.value.partition(":")
    return Path(str(resources.files(package) / name))


def test_the_package_holds_its_manifest_as_a_real_file() -> None:
    path = registered_manifest()
    assert path.is_file() and not path.is_symlink(), f"{path} must be a file of the package, not a link"
    assert path.parent == Path(str(resources.files("napari_unet")))


def test_the_manifest_declares_the_widgets_and_their_commands() -> None:
    manifest = PluginManifest.from_file(registered_manifest())
    assert manifest.name == "napari-unet"
    commands = {command.id: command.python_name for command in manifest.contributions.commands}
    widgets = {widget.display_name: widget.command for widget in manifest.contributions.widgets}
    assert commands[widgets["U-Net segmentation"]] == "napari_unet.gui.widget:SegmentWidget"
    assert commands[widgets["U-Net batch segmentation"]] == "napari_unet.gui.batch_widget:BatchWidget"
    assert all(name.startswith("napari_unet.gui.") for name in commands.values())
