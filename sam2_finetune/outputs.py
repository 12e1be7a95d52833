"""Writing outputs so that an interrupted run never leaves half a result where a good one belongs.

Everything is written to a temporary sibling of the target and renamed into place at the end.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sam2_finetune.errors import OptionsError, OutputExistsError, describe


def ensure_writable(out: Path, overwrite: bool) -> None:
    """Raise :class:`OutputExistsError` if ``out`` holds something and ``overwrite`` is false."""
    if out.exists() and not overwrite:
        if out.is_dir() and not any(out.iterdir()):
            return
        raise OutputExistsError(
            f"{out}: the output already exists and is not empty. "
            "Fix: choose another output path, or pass --overwrite (overwrite=True) to replace it."
        )


@contextmanager
def atomic_output_dir(out: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder; on success it replaces ``out`` in one rename.

    On any exception (or Ctrl-C) the temporary folder is removed and ``out`` is left untouched.

    >>> with atomic_output_dir("data/hf", overwrite=True) as tmp:  # doctest: +SKIP
    ...     dataset.save_to_disk(tmp)
    """
    out = Path(out)
    ensure_writable(out, overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as exc:
        raise _unwritable(out, exc) from None
    # mkdtemp makes the folder private (0700); the result should get the usual permissions.
    tmp.chmod(0o777 & ~_umask())
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _replace(tmp, out)


def _unwritable(out: Path, exc: OSError) -> OptionsError:
    # A missing or read-only parent, a file where a folder should be: one message, no traceback.
    blocker = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        reason = f"{blocker} is a file, not a folder"
    else:
        reason = (exc.strerror or str(exc)) + (f": {exc.filename}" if exc.filename else "")
    return OptionsError(
        describe(
            f"cannot write the output here ({reason})",
            file=out,
            fix="choose an output path in a folder you can write to",
        )
    )


def _replace(new: Path, out: Path) -> None:
    if out.exists() or out.is_symlink():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(new, out)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        os.replace(new, out)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    ensure_writable(path, overwrite)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private (0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, overwrite: bool = False) -> Path:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file and a rename."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite)
