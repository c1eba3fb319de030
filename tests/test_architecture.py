"""The architecture as the code must keep it: checked on the source, without importing the package.

- no import cycle inside ``napari_unet.core`` (``scripts/import_graph.py``'s graph);
- napari, Qt and magicgui imported only in ``napari_unet/gui``;
- ``gui/`` and ``cli.py`` only translate: no training loop, no provenance assembly and no
  choice between running a batch here and on a Dask cluster (all in the core).

Each check is also run on a small piece of code that breaks the rule, to show it would fail.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "napari_unet"
TRANSLATORS = sorted((PACKAGE / "gui").rglob("*.py")) + [PACKAGE / "cli.py"]
"""The modules that translate between people and the core: the GUI and the command line."""


def load_import_graph() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph", ROOT / "scripts" / "import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


import_graph = load_import_graph()


# -- what a module does, read from its syntax tree --------------------------------------------


def called_names(tree: ast.AST) -> set[str]:
    """Names of everything called: ``f(...)`` gives ``f``, ``a.b.f(...)`` gives ``f``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            function = node.func
            if isinstance(function, ast.Name):
                names.add(function.id)
            elif isinstance(function, ast.Attribute):
                names.add(function.attr)
    return names


def imported(tree: ast.AST) -> set[str]:
    """Every module imported, and ``package.name`` for each ``from package import name``."""
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def training_loop(source: str) -> list[str]:
    """What in ``source`` trains a network: a ``train(...)`` call, an optimiser, a backward pass."""
    tree = ast.parse(source)
    found = sorted(called_names(tree) & {"train", "backward", "zero_grad", "AdamW", "Adam", "SGD"})
    found += sorted(m for m in imported(tree) if m.startswith("torch.optim"))
    found += [
        f"torch.optim ({node.lineno})"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "optim"
    ]
    return found


PROVENANCE_KEYS = {"parent_hash", "ancestors", "software", "versions", "model_hash", "input_sha256", "host"}
PROVENANCE_PARTS = {
    "software_versions",
    "gethostname",
    "ancestry",
    "image_record",
    "file_digest",
    "pixels_sha256",
}


def provenance_assembly(source: str) -> list[str]:
    """What in ``source`` builds a provenance record instead of asking the core's builder for one."""
    tree = ast.parse(source)
    found = sorted(called_names(tree) & PROVENANCE_PARTS)
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)}
            found += sorted(keys & PROVENANCE_KEYS)
        elif isinstance(node, ast.keyword) and node.arg == "provenance" and isinstance(node.value, ast.Dict):
            found.append(f"provenance={{...}} ({node.value.lineno})")
        elif isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                inner = target.value if isinstance(target, ast.Subscript) else target
                if isinstance(inner, ast.Attribute) and inner.attr == "provenance":
                    found.append(f".provenance written ({node.lineno})")
    return found


def cluster_dispatch(source: str) -> list[str]:
    """What in ``source`` reaches the Dask runner itself rather than the one batch entry point."""
    tree = ast.parse(source)
    found = sorted(m for m in imported(tree) if m.startswith("napari_unet.core.batch.cluster"))
    found += sorted(called_names(tree) & {"segment_files_on_cluster", "segment_files"})
    return found


# -- the checks --------------------------------------------------------------------------------


def test_no_import_cycle_inside_the_core() -> None:
    graph = import_graph.import_graph()
    assert "napari_unet.core.progress" in graph and "napari_unet.core.batch.runner" in graph
    assert "napari_unet.core.batch.local" in graph["napari_unet.core.batch.runner"]  # imports are seen
    assert import_graph.cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"e", "a"}, "f": {"g"}, "g": {"f"}}
    assert sorted(import_graph.cycles(graph)) == [["a", "b", "c"], ["f", "g"]]
    assert import_graph.cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_napari_qt_and_magicgui_are_imported_only_in_the_gui() -> None:
    assert import_graph.gui_imports_outside_gui() == []


@pytest.mark.parametrize("path", TRANSLATORS, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_the_gui_and_the_command_line_only_translate(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    assert training_loop(source) == [], f"{path.name} trains a network itself"
    assert provenance_assembly(source) == [], f"{path.name} assembles provenance itself"
    assert cluster_dispatch(source) == [], f"{path.name} chooses between here and a cluster itself"


def test_the_batch_entry_point_is_what_they_call() -> None:
    for path in (PACKAGE / "cli.py", PACKAGE / "gui" / "batch_widget.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert "segment_batch" in called_names(tree), path.name
        assert "napari_unet.core.batch.runner" in imported(tree), path.name


def test_the_checks_catch_what_they_look_for() -> None:
    loop = """
import torch
from torch.optim import SGD
optimiser = torch.optim.AdamW(network.parameters())
loss.backward()
result = run(train(bundle, samples, config))
"""
    assert training_loop(loop) == [
        "AdamW",
        "backward",
        "train",
        "torch.optim",
        "torch.optim.SGD",
        "torch.optim (4)",
    ]
    assembly = """
import socket
bundle.provenance["parent"] = parent.name
metadata = {"model": name, "host": socket.gethostname(), "versions": software_versions()}
run(train(bundle, samples, config, provenance={"command": "napari-unet train"}))
"""
    assert provenance_assembly(assembly) == [
        "gethostname",
        "software_versions",
        ".provenance written (3)",
        "host",
        "versions",
        "provenance={...} (5)",
    ]
    dispatch = """
from napari_unet.core.batch.cluster import connect, segment_files_on_cluster
records = segment_files_on_cluster(inputs, outdir, spec, connect(address)) if address else segment_files(inputs)
"""
    assert cluster_dispatch(dispatch) == [
        "napari_unet.core.batch.cluster",
        "napari_unet.core.batch.cluster.connect",
        "napari_unet.core.batch.cluster.segment_files_on_cluster",
        "segment_files",
        "segment_files_on_cluster",
    ]
