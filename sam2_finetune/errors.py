"""The one exception family of sam2-finetune.

Every user-facing failure is a :class:`Sam2FinetuneError` whose message names where the problem
is (file, member, frame, object, field), what was expected, what was found, and what to do. The CLI
prints that message alone, without a traceback.
"""

from __future__ import annotations

from os import PathLike


def describe(
    problem: str,
    *,
    file: str | PathLike[str] | None = None,
    member: str | None = None,
    frame_index: int | None = None,
    object_id: int | str | None = None,
    field: str | None = None,
    expected: object = None,
    found: object = None,
    fix: str | None = None,
) -> str:
    """Build a message of the shape every error of the package uses.

    >>> print(describe("mask counts do not add up", file="a.zip", member="annotations.json",
    ...       frame_index=6, object_id=2, expected=65536, found=65535, fix="re-export it"))
    a.zip!annotations.json, frame 6, object 2: mask counts do not add up (expected 65536, \
found 65535). Fix: re-export it.
    """
    where = []
    if file is not None:
        where.append(f"{file}!{member}" if member else str(file))
    elif member:
        where.append(member)
    if frame_index is not None:
        where.append(f"frame {frame_index}")
    if object_id is not None:
        where.append(f"object {object_id}")
    if field:
        where.append(f"field {field!r}")
    message = (", ".join(where) + ": " if where else "") + problem
    if expected is not None:
        message += f" (expected {expected}, found {found})"
    elif found is not None:  # no "expected None" when only what was found is known
        message += f" (found {found})"
    message += "."
    if fix:
        message += f" Fix: {fix.rstrip('.')}."
    return message


class Sam2FinetuneError(Exception):
    """Base of every error the package raises on purpose. ``exit_code`` is what the CLI returns."""

    exit_code = 2


class ExportError(Sam2FinetuneError):
    """A SAM2 export (ZIP or folder) cannot be read as the export format says."""


class UnsafeArchiveError(ExportError):
    """An archive is refused: path traversal, absolute paths, symlinks, or a zip bomb."""


class MaskError(ExportError):
    """One object's mask cannot be decoded (unknown form, counts that do not add up, ...)."""


class DatasetError(Sam2FinetuneError):
    """A converted dataset is missing, unreadable, or lacks what a stage needs."""


class OutputExistsError(Sam2FinetuneError):
    """An output path already holds something and ``--overwrite`` was not given."""


class OptionsError(Sam2FinetuneError):
    """Options or a configuration failed validation; the message lists every problem at once."""


class ModelError(Sam2FinetuneError):
    """A model family, checkpoint or tiny model cannot be built, found or loaded as asked."""
