from __future__ import annotations

import multiprocessing
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_unet.core.config import PostprocessConfig, TrainingConfig
from napari_unet.core.models.files import ModelBundle, save_model
from napari_unet.core.models.lineage import image_record, pixels_sha256
from napari_unet.core.models.registry import bundled_model_path, load_model, resolve_model, user_model_dir
from napari_unet.core.models.store import (
    COUNTERS_NAME,
    LOCK_NAME,
    StoreError,
    current_version,
    delete_model,
    describe,
    describe_choice,
    family_of,
    list_versions,
    model_standing,
    not_better,
    parent_of,
    rename_model,
    rollback,
    save_version,
    starting_model,
    store_lock,
)
from napari_unet.core.progress import run
from napari_unet.core.training.loop import train
from napari_unet.core.training.samples import prepare_sample
from tests import helpers


@pytest.fixture(autouse=True)
def model_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_UNET_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "models"


# the store keeps whatever post-processing a model has; these carry the defaults
tiny_bundle = partial(helpers.tiny_bundle, name="nuclei", postprocess=PostprocessConfig())


def stray_files(folder: Path) -> list[str]:
    return [
        p.name
        for p in folder.iterdir()
        if p.name.startswith(".") and p.name not in (LOCK_NAME, COUNTERS_NAME)
    ]


def test_family_of():
    assert family_of("nuclei") == "nuclei"
    assert family_of("nuclei-v12") == "nuclei"
    assert family_of("my-model-v2") == "my-model"
    assert family_of("v2") == "v2"


def test_versions_number_up_and_record_parent(model_dir, tmp_path):
    first = save_version(tiny_bundle(source="/somewhere/nuclei.pt"))
    assert first.name == "nuclei-v1" and first.path == model_dir / "nuclei-v1.pt"
    loaded = load_model(first.path)
    assert loaded.name == "nuclei-v1"
    assert loaded.provenance["parent"] == "nuclei"
    assert loaded.provenance["parent_source"] == "/somewhere/nuclei.pt"

    child = load_model(first.path)
    child.provenance = {**child.provenance, "parent": child.name, "parent_source": child.source}
    second = save_version(child)
    assert second.name == "nuclei-v2"
    assert parent_of(load_model(second.path)) == str(first.path)
    assert [v.name for v in list_versions("nuclei-v2")] == ["nuclei-v1", "nuclei-v2"]
    assert current_version("nuclei") == second
    assert resolve_model("nuclei-v2") == second.path
    assert not list(tmp_path.glob("*.pt")), "nothing may be written to the working directory"
    assert not stray_files(model_dir), "no temporary files left"


def fine_tune(parent: ModelBundle, images: list[tuple[str, np.ndarray, np.ndarray]], steps: int = 3):
    """What the widget's Fine-tune does, through core only: train, then save the next version."""
    samples = [prepare_sample(im, lab, parent.config, parent.preprocess, name=n) for n, im, lab in images]
    config = TrainingConfig(steps=steps, batch_size=2, crop_size=32, amp=False)
    provenance = {"parent_source": parent.source, "images": [image_record(n, im) for n, im, _ in images]}
    return save_version(run(train(parent, samples, config, device="cpu", provenance=provenance)))


def blobs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.zeros((48, 48), np.int32)
    for index, (y, x) in enumerate(rng.integers(6, 42, size=(5, 2)), start=1):
        labels[y - 4 : y + 4, x - 4 : x + 4] = index
    image = (labels > 0) * 200.0 + rng.normal(20, 5, labels.shape)
    return image.astype(np.float32), labels


def test_two_fine_tunes_make_a_version_chain_with_lineage(model_dir):
    base_path = save_model(tiny_bundle(name="tiny"), model_dir / "tiny.pt")
    base = load_model(base_path)
    first_images = [("a.tif", *blobs(1)), ("b.tif", *blobs(2))]
    second_images = [("c.tif", *blobs(3))]

    v1 = fine_tune(base, first_images)
    v2 = fine_tune(load_model(v1.path), second_images)

    assert [v.name for v in list_versions("tiny")] == ["tiny-v1", "tiny-v2"]
    one, two = load_model(v1.path), load_model(v2.path)
    assert len({base.weights_hash(), one.weights_hash(), two.weights_hash()}) == 3
    assert (one.provenance["parent"], one.provenance["parent_hash"]) == ("tiny", base.weights_hash())
    assert (two.provenance["parent"], two.provenance["parent_hash"]) == ("tiny-v1", one.weights_hash())
    assert [(a["name"], a["hash"]) for a in two.provenance["ancestors"]] == [
        ("tiny-v1", one.weights_hash()),
        ("tiny", base.weights_hash()),
    ]
    assert one.provenance["images"] == [
        {"name": "a.tif", "sha256": pixels_sha256(first_images[0][1])},
        {"name": "b.tif", "sha256": pixels_sha256(first_images[1][1])},
    ]
    assert [i["name"] for i in two.provenance["images"]] == ["c.tif"], "a child lists only its own images"
    assert two.provenance["steps"] == 3 and two.provenance["date"]
    assert parent_of(two) == str(v1.path) and parent_of(one) == str(base_path)
    text = "\n".join(describe(two))
    assert two.weights_hash() in text and "tiny-v2 <- tiny-v1" in text and "c.tif" in text


def test_rollback_restores_an_old_version_as_the_newest(model_dir):
    v1 = save_version(tiny_bundle(seed=1))
    v2 = save_version(tiny_bundle(seed=2))
    assert current_version("nuclei") == v2

    v3 = rollback("nuclei-v1")
    assert v3.name == "nuclei-v3" and current_version("nuclei") == v3
    restored = load_model(v3.path)
    assert restored.weights_hash() == load_model(v1.path).weights_hash() != load_model(v2.path).weights_hash()
    assert restored.provenance["restored_from"]["name"] == "nuclei-v1"
    assert [v.name for v in list_versions("nuclei")] == ["nuclei-v1", "nuclei-v2", "nuclei-v3"], (
        "nothing lost"
    )

    bundled = rollback("nuclei")  # back to the bundled weights
    assert bundled.name == "nuclei-v4"
    assert load_model(bundled.path).weights_hash() == load_model(bundled_model_path("nuclei")).weights_hash()
    with pytest.raises(StoreError, match="no such model"):
        rollback("nuclei-v9")


def test_rename_and_delete(model_dir):
    v1 = save_version(tiny_bundle())
    child = load_model(v1.path)
    child.provenance = {
        "parent": child.name,
        "parent_hash": child.weights_hash(),
        "parent_source": str(v1.path),
    }
    v2 = save_version(child)

    renamed = rename_model("nuclei-v1", "lab-nuclei")
    assert not v1.path.exists() and renamed == model_dir / "lab-nuclei.pt"
    moved = load_model(resolve_model("lab-nuclei"))
    assert moved.name == "lab-nuclei" and moved.provenance["renamed_from"] == "nuclei-v1"
    assert parent_of(load_model(v2.path)) == str(renamed), "the parent is found by its weights hash"
    assert save_version(moved).name == "lab-nuclei-v1"

    with pytest.raises(StoreError, match="bundled model"):
        rename_model("lab-nuclei", "phase-cells")
    with pytest.raises(StoreError, match="already exists"):
        rename_model("lab-nuclei", "nuclei-v2")
    with pytest.raises(StoreError, match="not a valid model name"):
        rename_model("lab-nuclei", "../escape")
    with pytest.raises(StoreError, match="bundled model"):
        delete_model("nuclei")

    assert delete_model("nuclei-v2") == v2.path and not v2.path.exists()
    with pytest.raises(StoreError, match="no such model"):
        delete_model("nuclei-v2")
    assert save_version(tiny_bundle()).name == "nuclei-v3", "a deleted version's name is not reused"
    assert not stray_files(model_dir)


def test_concurrent_thread_saves_never_overwrite(model_dir):
    bundles = [tiny_bundle() for _ in range(4)]
    threads = [threading.Thread(target=save_version, args=(b,)) for b in bundles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [v.number for v in list_versions("nuclei")] == [1, 2, 3, 4]
    assert sorted(b.name for b in bundles) == [f"nuclei-v{i}" for i in (1, 2, 3, 4)]


def _save_versions_in_process(folder: str, seed: int, count: int, start) -> list[str]:  # noqa: ANN001
    import os

    os.environ["NAPARI_UNET_MODEL_DIR"] = folder
    torch.set_num_threads(1)
    start.wait()  # all processes save at the same moment
    return [save_version(tiny_bundle(seed=seed)).name for _ in range(count)]


def test_concurrent_processes_get_distinct_loadable_versions(model_dir):
    context = multiprocessing.get_context("spawn")
    processes, saves = 3, 3
    with context.Manager() as manager:
        start = manager.Barrier(processes)
        with context.Pool(processes) as pool:
            names = pool.starmap(
                _save_versions_in_process, [(str(model_dir), seed, saves, start) for seed in range(processes)]
            )
    flat = [name for per_process in names for name in per_process]
    assert sorted(flat) == sorted(f"nuclei-v{i}" for i in range(1, processes * saves + 1))
    versions = list_versions("nuclei")
    assert [v.number for v in versions] == list(range(1, processes * saves + 1))
    hashes = {tiny_bundle(seed=s).weights_hash(): s for s in range(processes)}
    for per_process, seed in zip(names, range(processes), strict=True):
        for name in per_process:
            loaded = load_model(model_dir / f"{name}.pt")  # complete, not interleaved
            assert loaded.name == name and hashes[loaded.weights_hash()] == seed
    assert not stray_files(model_dir)


def test_a_held_lock_makes_others_wait_then_give_up_clearly(model_dir):
    with store_lock() as folder:
        assert folder == model_dir
        with pytest.raises(StoreError, match="model store is busy"):
            with store_lock(timeout=0.1):
                pass
    with store_lock(timeout=0.1):
        pass


def test_list_versions_ignores_other_files(model_dir):
    assert list_versions() == []
    save_version(tiny_bundle(name="em"))
    (model_dir / "notes.txt").write_text("x")
    (model_dir / "plain.pt").write_bytes(b"")
    assert [v.name for v in list_versions()] == ["em-v1"]
    assert user_model_dir() == model_dir


def test_a_version_whose_writer_died_leaves_no_file_behind(model_dir):
    """kill -9 mid-save leaves a temporary file; the next change to the store removes it (not a live one's)."""
    import subprocess
    import sys

    from napari_unet.core.io.atomic import PART_SUFFIX, _part_prefix

    save_version(tiny_bundle())
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    stale = model_dir / f"{_part_prefix(model_dir / 'nuclei-v2.pt', pid=dead_pid)}.x1y2{PART_SUFFIX}"
    live = model_dir / f"{_part_prefix(model_dir / 'nuclei-v9.pt')}.a1b2{PART_SUFFIX}"
    stale.write_bytes(b"half a model")
    live.write_bytes(b"being written")
    second = save_version(tiny_bundle(seed=1))
    assert not stale.exists() and live.exists()
    assert second.name == "nuclei-v2" and load_model(second.path).name == "nuclei-v2"


def test_model_standing_and_the_widgets_choice_in_the_same_words(model_dir, tmp_path):
    bundled = bundled_model_path("nuclei")
    assert model_standing("nuclei") == "bundled"
    assert starting_model() == bundled
    assert describe_choice(bundled) == "Uses nuclei, bundled (no fine-tuned version of it yet)."

    v1 = save_version(tiny_bundle())
    v2 = save_version(tiny_bundle(seed=1))
    assert model_standing("nuclei") == "bundled; its current version is nuclei-v2"
    assert model_standing("nuclei-v2") == "current version of nuclei"
    assert model_standing("nuclei-v1") == "older version of nuclei (current: nuclei-v2)"
    assert starting_model() == v2.path, "the widget starts with the newest fine-tuning"
    choice = describe_choice(v2.path)
    assert "the current version of nuclei" in choice
    assert "napari-unet segment uses the bundled nuclei unless given --model nuclei-v2" in choice
    assert describe_choice(v1.path) == "Uses nuclei-v1, older version of nuclei (current: nuclei-v2)."
    assert describe_choice(bundled) == "Uses nuclei, bundled; its current version is nuclei-v2."

    rename_model("nuclei-v1", "lab-nuclei")
    assert model_standing("lab-nuclei") == "your model"
    elsewhere = tmp_path / "elsewhere.pt"
    save_model(tiny_bundle(), elsewhere)
    assert describe_choice(elsewhere) == f"Uses elsewhere, a model file ({elsewhere})."


def test_a_fine_tuning_that_scored_worse_never_becomes_current_by_itself(model_dir):
    worse = tiny_bundle(seed=1)
    worse.provenance = {"held_out_validation": {"better": False}}
    first = save_version(worse)
    assert current_version("nuclei") is None and starting_model() == bundled_model_path("nuclei")
    assert model_standing("nuclei-v1") == "version of nuclei not better on your corrections (current: nuclei)"

    better = save_version(tiny_bundle())
    worse = tiny_bundle(seed=2)
    worse.provenance = {"held_out_validation": {"better": False}}
    second = save_version(worse)
    assert current_version("nuclei") == better and starting_model() == better.path
    assert (
        model_standing("nuclei-v3") == "version of nuclei not better on your corrections (current: nuclei-v2)"
    )
    assert load_model(second.path).weights_hash() == worse.weights_hash(), "saved, and can be chosen"
    assert not_better() == {first.name, second.name}

    restored = rollback("nuclei-v3")
    assert current_version("nuclei") == restored, "a rollback is the person's choice and becomes current"
