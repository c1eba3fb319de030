import subprocess
import sys

CHECK = """
import sys
{imports}
loaded = sorted(m for m in {forbidden!r} if m in sys.modules)
print(",".join(loaded))
"""


def loaded_after(imports: str, forbidden: tuple[str, ...]) -> list[str]:
    code = CHECK.format(imports=imports, forbidden=forbidden)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in out.stdout.strip().split(",") if m]


def test_importing_the_package_loads_no_torch_qt_or_napari() -> None:
    assert loaded_after("import napari_unet", ("torch", "napari", "qtpy", "PyQt5", "PyQt6", "magicgui")) == []


def test_core_and_cli_never_import_the_gui_stack() -> None:
    imports = "\n".join(
        [
            "import napari_unet.cli",
            "import napari_unet.core.batch.local, napari_unet.core.evaluation.evaluate, napari_unet.core.training.loop",
            "import napari_unet.core.segmentation.segmenter, napari_unet.core.models.files, napari_unet.core.evaluation.metrics",
        ]
    )
    assert loaded_after(imports, ("napari", "qtpy", "PyQt5", "PyQt6", "magicgui")) == []


def test_the_docks_open_without_importing_torch() -> None:
    # napari imports a dock's module on the click: torch (seconds) loads afterwards, in a worker
    imports = "import napari_unet.gui.widget, napari_unet.gui.batch_widget"
    assert loaded_after(imports, ("torch",)) == []
