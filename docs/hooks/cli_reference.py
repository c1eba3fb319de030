"""MkDocs hook: fill the command-line reference from the ``napari-unet`` argument parser.

``docs/cli.md`` holds the marker ``<!-- cli-reference -->``; at build time it is
replaced by the ``--help`` text of every command and subcommand, taken from
``napari_unet.cli.build_parser()``, so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse
import os

MARKER = "<!-- cli-reference -->"
HELP_WIDTH = "100"


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    """The subcommands of ``parser``, in the order they were added."""
    found: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.extend(action.choices.items())
    return found


def _sections(parser: argparse.ArgumentParser, command: str, depth: int) -> list[str]:
    """Markdown for ``command`` and, below it, each of its subcommands."""
    lines = [f"{'#' * depth} `{command}`", "", "```text", parser.format_help().rstrip(), "```", ""]
    for name, sub in _subcommands(parser):
        lines += _sections(sub, f"{command} {name}", min(depth + 1, 4))
    return lines


def reference() -> str:
    """The whole command-line reference as Markdown."""
    os.environ["COLUMNS"] = HELP_WIDTH  # argparse wraps help to the terminal width; fix it
    from napari_unet.cli import build_parser

    return "\n".join(_sections(build_parser(), "napari-unet", 2))


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 (MkDocs hook signature)
    """Replace the marker on the command-line page with the generated reference."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference())
