"""MkDocs hook: fill the architecture page's module table from the source tree.

``docs/architecture.md`` holds the marker ``<!-- module-table -->``; at build time it is
replaced by one row per module of ``src/napari_unet`` with the first line of the module's
docstring (read with :mod:`ast`, nothing is imported), so the table follows the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

MARKER = "<!-- module-table -->"
PACKAGE = Path(__file__).resolve().parents[2] / "src" / "napari_unet"


def _summary(path: Path) -> str:
    """The first line of the module's docstring, or an empty string."""
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"), str(path))) or ""
    return docstring.strip().splitlines()[0].replace("|", "\\|") if docstring.strip() else ""


def module_table() -> str:
    """A Markdown table: module path (relative to ``src/napari_unet``) and its summary."""
    rows = ["| module | what it does |", "|---|---|"]
    for path in sorted(PACKAGE.rglob("*.py")):
        summary = _summary(path)
        if path.name == "__init__.py" and not summary:
            continue
        rows.append(f"| `{path.relative_to(PACKAGE).as_posix()}` | {summary} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 (MkDocs hook signature)
    """Replace the marker on the architecture page with the module table."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, module_table())
