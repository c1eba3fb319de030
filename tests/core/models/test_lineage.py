from functools import partial

import dask.array as da
import numpy as np

from napari_unet.core.config import PostprocessConfig, PreprocessConfig
from napari_unet.core.models.lineage import ancestry, image_record, lineage_entry, pixels_sha256
from tests.helpers import tiny_bundle

# the configs a new model gets; lineage reads only names, hashes and provenance
model_bundle = partial(tiny_bundle, preprocess=PreprocessConfig(), postprocess=PostprocessConfig())


def test_the_pixel_hash_depends_on_values_shape_and_dtype_only() -> None:
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    same = [np.asfortranarray(image), da.from_array(image, chunks=(1, 2)), image.copy()]
    assert {pixels_sha256(x) for x in same} == {pixels_sha256(image)}
    assert pixels_sha256(image.astype(np.int32)) != pixels_sha256(image)
    assert pixels_sha256(image.reshape(4, 3)) != pixels_sha256(image)
    changed = image.copy()
    changed[0, 0] = 1
    assert pixels_sha256(changed) != pixels_sha256(image)
    assert image_record("plate1.tif", image) == {"name": "plate1.tif", "sha256": pixels_sha256(image)}


def test_a_lineage_entry_names_the_model_its_weights_and_its_training() -> None:
    model = model_bundle("nuclei-v2", 0, {"date": "2026-01-02T03:04:05+00:00", "steps": 120})
    assert lineage_entry(model) == {
        "name": "nuclei-v2",
        "hash": model.weights_hash(),
        "date": "2026-01-02T03:04:05+00:00",
        "steps": 120,
    }
    from_settings = model_bundle("old", 1, {"training": {"steps": 400}})
    assert lineage_entry(from_settings)["steps"] == 400 and lineage_entry(from_settings)["date"] is None


def test_ancestry_puts_the_parent_first_then_its_own_ancestors() -> None:
    grandparent = model_bundle("nuclei", 0)
    parent = model_bundle("nuclei-v1", 1, {"ancestors": ancestry(grandparent), "steps": 50})
    chain = ancestry(parent)
    assert [entry["name"] for entry in chain] == ["nuclei-v1", "nuclei"]
    assert chain[0]["hash"] == parent.weights_hash() and chain[1]["hash"] == grandparent.weights_hash()
    assert chain[0]["hash"] != chain[1]["hash"]
    assert ancestry(model_bundle("odd", 2, {"ancestors": "not a list"})) == [
        lineage_entry(model_bundle("odd", 2))
    ]
