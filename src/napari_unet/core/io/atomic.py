"""Atomic writes: a file appears under its name only when complete; leftovers of dead writers are removed."""

from __future__ import annotations

import glob
import os
import socket
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it onto ``final`` on success.

    On any exception the temporary file is removed and ``final`` is untouched,
    so no half-written file ever carries the final name.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    # host and pid in the name let a later run tell a dead writer's leftovers from a live one's
    handle, tmp_name = tempfile.mkstemp(
        prefix=f"{_part_prefix(final)}.", suffix=PART_SUFFIX, dir=final.parent
    )
    os.close(handle)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o666 & ~umask)  # mkstemp makes 0600; outputs are ordinary files
    try:
        yield tmp
        with open(tmp, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(tmp, final)
        _fsync_folder(final.parent)
    finally:
        tmp.unlink(missing_ok=True)


PART_SUFFIX = ".part"


_HOST = socket.gethostname().replace(".", "_").replace("-", "_") or "host"


def _part_prefix(final: Path, host: str = _HOST, pid: int | None = None) -> str:
    return f".{final.name}.{host}-{os.getpid() if pid is None else pid}"


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` survive a power loss (where the platform allows it)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_stale_parts(final: str | os.PathLike[str]) -> list[Path]:
    """Delete temporary files that dead writers of ``final`` left behind.

    A writer killed mid-file (``kill -9``, power loss) leaves its temporary
    file from :func:`atomic_path`.  Those never carry the final name, so they
    never pass for a result; this removes the ones whose writer ran on this
    host and is no longer alive.  Files of live writers, and of writers on
    other hosts (a shared folder on a cluster), are left alone.

    Returns
    -------
    list of Path
        The files removed.

    """
    final = Path(final)
    return _remove_dead(final.parent.glob(f".{glob.escape(final.name)}.{_HOST}-*{PART_SUFFIX}"))


def remove_stale_parts_in(folder: str | os.PathLike[str]) -> list[Path]:
    """:func:`remove_stale_parts` for every file in ``folder`` (e.g. model versions never finished)."""
    return _remove_dead(Path(folder).glob(f".*.{_HOST}-*{PART_SUFFIX}"))


def _remove_dead(parts: Iterable[Path]) -> list[Path]:
    removed = []
    for part in parts:
        pid_text = part.name.rsplit(f".{_HOST}-", 1)[-1].split(".", 1)[0]
        if pid_text.isdigit() and not _process_alive(int(pid_text)):
            part.unlink(missing_ok=True)
            removed.append(part)
    return removed
