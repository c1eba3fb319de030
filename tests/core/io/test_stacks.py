from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_unet.core.io.files import InputError
from napari_unet.core.io.stacks import LabelStackWriter, PixelSize, TiffImage, read_label_metadata


def pixel_size(path: Path) -> PixelSize | None:
    with TiffImage(path) as image:
        return image.pixel_size


def hyperstack() -> np.ndarray:
    return np.arange(2 * 3 * 2 * 16 * 20, dtype=np.uint16).reshape(2, 3, 2, 16, 20)


def write_variants(folder: Path) -> dict[str, np.ndarray]:
    data = hyperstack()
    tifffile.imwrite(folder / "imagej.tif", data, imagej=True, metadata={"axes": "TZCYX"})
    tifffile.imwrite(folder / "zlib.tif", data[0], compression="zlib", metadata={"axes": "ZCYX"})
    tifffile.imwrite(folder / "plane.tif", data[0, 0, 0])
    tifffile.imwrite(folder / "plane_zlib.tif", data[0, 0, 0], compression="zlib")
    tifffile.imwrite(folder / "ome.tif", data[1], ome=True, metadata={"axes": "ZCYX"})
    rgb = np.arange(3 * 16 * 20 * 3, dtype=np.uint8).reshape(3, 16, 20, 3)
    tifffile.imwrite(folder / "rgb.tif", rgb, photometric="rgb")
    return {
        "imagej.tif": data,
        "zlib.tif": data[0],
        "plane.tif": data[0, 0, 0],
        "plane_zlib.tif": data[0, 0, 0],
        "ome.tif": data[1],
        "rgb.tif": rgb,
    }


def test_tiff_image_indexes_like_the_array_it_holds(tmp_path: Path) -> None:
    for name, expected in write_variants(tmp_path).items():
        with TiffImage(tmp_path / name) as image:
            assert image.shape == expected.shape and image.dtype == expected.dtype, name
            keys = [(0,), (-1,), (slice(1, None), 0), (1, slice(None), -1), (slice(None),) * expected.ndim]
            for key in keys:
                key = key[: expected.ndim - 2] or key[:1]
                np.testing.assert_array_equal(image[key], expected[key], err_msg=f"{name} {key}")
            np.testing.assert_array_equal(np.asarray(image), expected)


def test_tiff_image_reads_only_the_pages_of_the_selected_plane(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tifffile.imwrite(tmp_path / "z.tif", hyperstack()[0], compression="zlib", metadata={"axes": "ZCYX"})
    read: list[int] = []
    original = TiffImage._read_page

    def counting(self: TiffImage, number: int) -> np.ndarray:
        read.append(number)
        return original(self, number)

    monkeypatch.setattr(TiffImage, "_read_page", counting)
    with TiffImage(tmp_path / "z.tif") as image:
        assert image.shape == (3, 2, 16, 20)
        image[2, 1]
        assert read == [5]  # page (z=2, c=1) of 6
        image[1]
        assert read == [5, 2, 3]


@pytest.mark.parametrize("compression", [None, "zlib"])
@pytest.mark.parametrize("kept", [0.3, 0.7, 0.97])
def test_truncated_stack_is_an_input_error_not_fewer_planes(
    tmp_path: Path, compression: str | None, kept: float
) -> None:
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 4000, (6, 64, 64), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "full.tif", stack, compression=compression)
    data = (tmp_path / "full.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: int(len(data) * kept)])
    with pytest.raises(InputError, match=r"cut\.tif: (damaged|truncated|cannot read)"):
        with TiffImage(tmp_path / "cut.tif") as image:
            for z in range(image.shape[0]):
                image[z]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "cannot read as TIFF"),
        (b"GIF89a" + bytes(100), "cannot read as TIFF"),
    ],
)
def test_unreadable_files_raise_input_error_naming_the_file(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    (tmp_path / "bad.tif").write_bytes(content)
    with pytest.raises(InputError, match=rf"bad\.tif: {reason}"):
        TiffImage(tmp_path / "bad.tif")


def test_unsupported_pixels_raise_input_error(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "complex.tif", np.zeros((8, 8), np.complex64))
    with pytest.raises(InputError, match=r"complex\.tif: unsupported pixel type complex64"):
        TiffImage(tmp_path / "complex.tif")


def test_pixel_size_from_imagej_ome_and_resolution_tags(tmp_path: Path) -> None:
    data = hyperstack()[0, :, 0]
    tifffile.imwrite(
        tmp_path / "ij.tif",
        data,
        imagej=True,
        resolution=(1 / 0.25, 1 / 0.3),
        metadata={"axes": "ZYX", "spacing": 2.0, "unit": "micron"},
    )
    tifffile.imwrite(
        tmp_path / "ome.tif",
        data,
        ome=True,
        metadata={"axes": "ZYX", "PhysicalSizeX": 120.0, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 0.12},
    )
    tifffile.imwrite(tmp_path / "cm.tif", data[0], resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "none.tif", data[0])
    sizes = {name: pixel_size(tmp_path / name) for name in ("ij.tif", "ome.tif", "cm.tif", "none.tif")}
    assert sizes["ij.tif"] == PixelSize(0.25, pytest.approx(0.3), 2.0, "µm")
    assert sizes["ome.tif"] == PixelSize(pytest.approx(0.12), 0.12, None, "µm")
    assert sizes["cm.tif"] == PixelSize(0.5, 0.5, None, "µm")
    assert sizes["none.tif"] is None


def test_writer_streams_planes_and_keeps_shape_axes_metadata_and_pixel_size(tmp_path: Path) -> None:
    planes = np.arange(2 * 3 * 16 * 20, dtype=np.int32).reshape(2, 3, 16, 20) % 7
    size = PixelSize(0.2, 0.2, 1.5, "µm")
    with LabelStackWriter(tmp_path / "out.tif", planes.shape, "TZYX", {"model": "m"}, size) as writer:
        for plane in planes.reshape(-1, 16, 20):
            writer.write(plane)
            # nothing under the final name until the end
            assert not (tmp_path / "out.tif").exists()
        writer.metadata["seconds"] = 1.5
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out.tif"), planes)
    with tifffile.TiffFile(tmp_path / "out.tif") as tiff:
        assert len(tiff.pages) == 6 and tiff.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert tiff.series[0].axes == "TZYX" and tiff.pages[0].dtype == np.uint16
        description = json.loads(tiff.pages[0].description)
    assert description["model"] == "m" and description["seconds"] == 1.5 and description["objects"] == 6
    assert pixel_size(tmp_path / "out.tif") == size
    assert read_label_metadata(tmp_path / "out.tif") == description
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_writer_widens_to_uint32_when_a_label_passes_65535(tmp_path: Path) -> None:
    planes = np.array([[[1, 2]], [[70000, 0]], [[3, 65535]]], np.int64)
    with LabelStackWriter(tmp_path / "wide.tif", planes.shape, "ZYX") as writer:
        for plane in planes:
            writer.write(plane)
    labels = tifffile.imread(tmp_path / "wide.tif")
    assert labels.dtype == np.uint32
    np.testing.assert_array_equal(labels, planes)
    assert writer.objects == 5 and writer.max_label == 70000
    assert [p.name for p in tmp_path.iterdir()] == ["wide.tif"]


def test_writer_leaves_nothing_when_interrupted_or_short(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        with LabelStackWriter(tmp_path / "a.tif", (3, 4, 4), "ZYX") as writer:
            writer.write(np.ones((4, 4), np.int32))
            raise KeyboardInterrupt
    with pytest.raises(ValueError, match="wrote 1 of 3 planes"):
        with LabelStackWriter(tmp_path / "b.tif", (3, 4, 4), "ZYX") as writer:
            writer.write(np.ones((4, 4), np.int32))
    assert list(tmp_path.iterdir()) == []


def test_bigtiff_when_the_labels_could_pass_2_gib(tmp_path: Path) -> None:
    assert LabelStackWriter(tmp_path / "big.tif", (600, 1024, 1024), "ZYX").bigtiff
    assert not LabelStackWriter(tmp_path / "small.tif", (40, 2048, 2048), "ZYX").bigtiff


def test_label_metadata_only_for_complete_napari_unet_files(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "foreign.tif", np.zeros((4, 4), np.uint16), description='{"shape": [4, 4]}')
    (tmp_path / "junk.tif").write_bytes(b"II*\x00junk")
    with LabelStackWriter(tmp_path / "ours.tif", (2, 4, 4), "ZYX") as writer:
        writer.write(np.zeros((4, 4), np.int32))
        writer.write(np.zeros((4, 4), np.int32))
    data = (tmp_path / "ours.tif").read_bytes()
    assert read_label_metadata(tmp_path / "ours.tif") is not None
    for name in ("foreign.tif", "junk.tif", "missing.tif"):
        assert read_label_metadata(tmp_path / name) is None
    (tmp_path / "cut.tif").write_bytes(data[: len(data) - 40])
    assert read_label_metadata(tmp_path / "cut.tif") is None
