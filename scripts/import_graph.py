"""Print import cycles inside ``napari_unet.core`` (exit 1 if any), and the GUI-boundary breaches.

Every import counts, top-level or inside a function, so a cycle hidden behind a
lazy import is found too.  Run from the repository root::

    python scripts/import_graph.py
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "src"
CORE = "napari_unet.core"
GUI_STACK = ("napari", "qtpy", "magicgui", "PyQt5", "PyQt6", "PySide2", "PySide6")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``path`` imports (``from pkg import module`` resolved too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known}


def import_graph() -> dict[str, set[str]]:
    """Module -> the core modules it imports, for every module of ``napari_unet.core``."""
    files = {module_name(p): p for p in (PACKAGE_ROOT / "napari_unet" / "core").rglob("*.py")}
    known = set(files)
    return {name: imported_modules(path, known) - {name} for name, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def gui_imports_outside_gui() -> list[str]:
    """``file: module`` for each import of napari, Qt or magicgui outside ``napari_unet/gui``."""
    breaches = []
    for path in sorted((PACKAGE_ROOT / "napari_unet").rglob("*.py")):
        if "gui" in path.relative_to(PACKAGE_ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            breaches += [
                f"{path.relative_to(PACKAGE_ROOT)}: {n}" for n in names if n.split(".")[0] in GUI_STACK
            ]
    return breaches


def main() -> int:
    found = cycles(import_graph())
    for component in found:
        print("import cycle:", " <-> ".join(component))
    breaches = gui_imports_outside_gui()
    for breach in breaches:
        print("GUI import outside napari_unet.gui:", breach)
    if not found and not breaches:
        print(f"no import cycle inside {CORE}; napari, Qt and magicgui imported only in napari_unet.gui")
    return 1 if found or breaches else 0


if __name__ == "__main__":
    sys.exit(main())
