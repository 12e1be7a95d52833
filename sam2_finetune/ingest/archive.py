"""Archive sources: a ZIP (maybe nested) or a folder, read member by member, refusing hostile
entries before anything is read; images indexed by frame number.
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from sam2_finetune.errors import ExportError, UnsafeArchiveError, describe

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv")
# Preference when one frame index has several candidate images.
_IMAGE_DIRS = ("images", "frames", "data")
# macOS "Compress" adds __MACOSX/ (resource forks), .DS_Store and ._name files; Windows Thumbs.db.
JUNK = re.compile(r"(^|/)(__MACOSX/|\.DS_Store$|\._|Thumbs\.db$|desktop\.ini$)", re.IGNORECASE)
_TRAILING_NUMBER = re.compile(r"(\d+)$")
# Ratios are only judged on members big enough to hurt; tiny members compress arbitrarily well.
_RATIO_MIN_BYTES = 1024**2
# Nested ZIPs are copied to an anonymous temporary file (memory first, disk past this size):
# zipfile needs random access, which a compressed member does not offer cheaply.
_SPOOL_BYTES = 64 * 1024**2


# --------------------------------------------------------------------------------------------
# Limits for untrusted archives
# --------------------------------------------------------------------------------------------


class ArchiveLimits(BaseModel):
    """Bounds that refuse hostile archives from the central directory alone, before a byte of any
    member is decompressed. Raise them for a trusted export that trips one; the error says which.
    """

    model_config = ConfigDict(frozen=True)

    max_total_bytes: int = Field(
        64 * 1024**3, gt=0, description="Largest total uncompressed size of an archive, in bytes."
    )
    max_member_bytes: int = Field(
        4 * 1024**3,
        gt=0,
        description="Largest uncompressed size of one member (one member is read at a time).",
    )
    max_ratio: float = Field(
        200.0,
        gt=1,
        description="Largest compression ratio of a member over 1 MiB, and of the whole archive. "
        "Real exports stay below about 130 (a static scene's annotations.json); deflated zeros, "
        "the usual bomb, reach 230 even at the fastest level and 1000 at the default one.",
    )
    max_members: int = Field(200_000, gt=0, description="Most entries an archive may hold.")
    max_nesting: int = Field(2, ge=0, description="How deep ZIPs inside ZIPs are followed.")


DEFAULT_LIMITS = ArchiveLimits()

# The one declaration of the ``limits`` option of every command that reads exports (info,
# convert, validate): the CLI turns it into ``--limits.max-ratio`` and the other dotted flags.
LimitsOption = Annotated[
    ArchiveLimits,
    Field(
        default_factory=ArchiveLimits,
        description="Bounds refusing hostile archives; raise one for a trusted export the "
        "error names (--limits.max-ratio 1000, --limits.max-members ...).",
    ),
]


def limit_flag(name: str, value: int) -> str:
    """How a refusal by limit ``name`` tells the user to raise it: the command-line flag first
    (what most users type) with a bound that lets this file through, then the Python spelling."""
    return f"--limits.{name.replace('_', '-')} {value} (Python: ArchiveLimits.{name})"


def _trusted(name: str, value: int) -> str:
    return f"if the file is trusted, pass {limit_flag(name, value)}"


# --------------------------------------------------------------------------------------------
# Sources: a ZIP (maybe nested) or a folder, read member by member, refusing hostile entries
# --------------------------------------------------------------------------------------------


def _unsafe(problem: str, name: str, member: str | None = None, **kw: Any) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        describe(f"{problem}; refusing the archive", file=name, member=member, **kw)
    )


def check_archive(
    archive: zipfile.ZipFile,
    name: str,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    archive_bytes: int | None = None,
) -> None:
    """Refuse path traversal, absolute paths, symlinks and zip bombs, from the directory alone.

    ``archive_bytes`` (the ZIP file's own size) adds two checks: members whose data would lie
    past the end of the file, and members sharing their compressed data (overlapping entries,
    the construction of the biggest known bombs), both betrayed by compressed sizes that add up
    to more than the file holds.
    """
    infos = archive.infolist()
    if len(infos) > limits.max_members:
        raise _unsafe(
            "archive has too many entries",
            name,
            expected=f"at most {limits.max_members}",
            found=len(infos),
            fix="check the file is a SAM2 export; if it is, pass "
            + limit_flag("max_members", len(infos)),
        )
    relative_fix = "re-create the ZIP from the export folder with relative paths"
    total = 0
    compressed = 0
    for info in infos:
        member = info.filename
        posix = member.replace("\\", "/")
        if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix):
            raise _unsafe("entry has an absolute path", name, member, fix=relative_fix)
        if ".." in posix.split("/"):
            raise _unsafe(
                "entry climbs out of the archive with '..'", name, member, fix=relative_fix
            )
        if stat.S_ISLNK(info.external_attr >> 16):
            raise _unsafe(
                "entry is a symbolic link",
                name,
                member,
                fix="re-create the ZIP without links (zip without --symlinks)",
            )
        if info.file_size > limits.max_member_bytes:
            raise _unsafe(
                "entry would expand past the size limit of one member (zip bomb?)",
                name,
                member,
                expected=f"at most {limits.max_member_bytes} bytes",
                found=f"{info.file_size} bytes",
                fix=_trusted("max_member_bytes", info.file_size),
            )
        if info.file_size > _RATIO_MIN_BYTES and info.file_size > limits.max_ratio * max(
            info.compress_size, 1
        ):
            raise _unsafe(
                "entry expands far more than real exports do (zip bomb?)",
                name,
                member,
                expected=f"compression ratio at most {limits.max_ratio:g}",
                found=f"{info.file_size / max(info.compress_size, 1):.0f}",
                fix=_trusted(
                    "max_ratio", math.ceil(info.file_size / max(info.compress_size, 1)) + 1
                ),
            )
        total += info.file_size
        compressed += info.compress_size
        if archive_bytes is not None and info.header_offset + info.compress_size > archive_bytes:
            raise _unsafe(
                "entry's data lies past the end of the file (truncated or forged)",
                name,
                member,
                expected=f"data within the file's {archive_bytes} bytes",
                found=f"offset {info.header_offset} + {info.compress_size} bytes",
                fix="download the export again",
            )
    if total > limits.max_total_bytes:
        raise _unsafe(
            "archive would expand past the size limit (zip bomb?)",
            name,
            expected=f"at most {limits.max_total_bytes} bytes",
            found=f"{total} bytes",
            fix=_trusted("max_total_bytes", total),
        )
    if archive_bytes is not None:
        if compressed > archive_bytes:
            raise _unsafe(
                "entries share their compressed data (overlapping entries: a zip bomb)",
                name,
                expected=f"compressed sizes adding up to at most the file's {archive_bytes} bytes",
                found=f"{compressed} bytes",
                fix="do not use this file",
            )
        if total > _RATIO_MIN_BYTES and total > limits.max_ratio * max(archive_bytes, 1):
            raise _unsafe(
                "archive expands far more than real exports do (zip bomb?)",
                name,
                expected=f"compression ratio at most {limits.max_ratio:g}",
                found=f"{total / max(archive_bytes, 1):.0f}",
                fix=_trusted("max_ratio", math.ceil(total / max(archive_bytes, 1)) + 1),
            )


def _spool_member(archive: zipfile.ZipFile, member: str, label: str) -> IO[bytes]:
    """Copy one member (a nested ZIP) to an anonymous temporary file, streaming."""
    spool = tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES)  # noqa: SIM115 (returned)
    try:
        with archive.open(member) as stream:
            shutil.copyfileobj(stream, spool, 1024**2)
    except _READ_ERRORS as exc:
        spool.close()
        raise _read_error(exc, label, member) from None
    spool.seek(0)
    return spool


# What reading a damaged member raises: zipfile's own errors, zlib/bz2/lzma errors, EOF on a
# truncated file, RuntimeError for encrypted members, NotImplementedError for unknown methods.
_READ_ERRORS = (
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    RuntimeError,
    NotImplementedError,
)


def _read_error(exc: BaseException, label: str, member: str) -> ExportError:
    if isinstance(exc, RuntimeError) and "encrypted" in str(exc):
        return ExportError(
            describe(
                "member is encrypted",
                file=label,
                member=member,
                fix="re-create the ZIP without a password",
            )
        )
    return ExportError(
        describe(
            f"member cannot be read ({type(exc).__name__}: {exc})",
            file=label,
            member=member,
            fix="download the export again; the archive is damaged (or forged)",
        )
    )


class ArchiveSource:
    """Members of an export root inside a ZIP (possibly inside another ZIP) or a folder.

    Picklable: a copy reopens the same path (so exports can cross process boundaries).
    """

    def __init__(self, path: Path, limits: ArchiveLimits):
        self.path = path
        self.limits = limits
        self._zip: zipfile.ZipFile | None = None
        self._spools: list[IO[bytes]] = []
        self._dir: Path | None = None
        self.root = ""  # prefix of the export inside the ZIP, "" or "folder/"
        self.label = str(path)
        if path.is_dir():
            self._open_folder(path)
        elif path.name.lower() in ("annotations.json", "metadata.json"):
            raise ExportError(
                describe(
                    f"this is the export's {path.name}, not the export",
                    file=path,
                    expected="a sam2_export_*.zip or the folder holding annotations.json",
                    found=f"the file {path.name}",
                    fix=f"pass its folder instead: {path.parent}",
                )
            )
        elif path.exists():
            self._open_zip()
        else:
            raise ExportError(
                describe(
                    "no such file or folder",
                    file=path,
                    fix="check the path (a sam2_export_*.zip or its extracted folder)",
                )
            )

    def __reduce__(self) -> tuple[Any, ...]:
        return (ArchiveSource, (self.path, self.limits))

    # -- folders ------------------------------------------------------------------------------
    def _open_folder(self, folder: Path) -> None:
        if (folder / "annotations.json").is_file():
            self._dir = folder
        else:
            # An export one level down: what unzipping a re-zipped export gives.
            candidates = sorted(
                p.parent
                for p in folder.glob("*/annotations.json")
                if not JUNK.search(p.relative_to(folder).as_posix())
            )
            if len(candidates) != 1:
                zips = sorted(p.name for p in folder.glob("*.zip"))
                raise ExportError(
                    describe(
                        "the folder holds several exports"
                        if candidates
                        else "no annotations.json in the export folder",
                        file=folder,
                        expected="annotations.json at the top or in one sub-folder",
                        found=", ".join(c.name for c in candidates[:5])
                        or (
                            f"no annotations.json; ZIPs: {', '.join(zips[:3])}" if zips else "none"
                        ),
                        fix="pass each export separately"
                        if candidates
                        else "pass the folder holding annotations.json, or the export ZIP itself",
                    )
                )
            self._dir = candidates[0]
            self.label = str(self._dir)
            if self._dir.is_symlink():  # found by the search, not named by the user
                raise UnsafeArchiveError(
                    describe(
                        "the export's sub-folder is a symbolic link; refusing it",
                        file=folder,
                        member=self._dir.name,
                        fix="pass the folder the link points to, or copy the export there",
                    )
                )
        links = []
        for dirpath, dirnames, filenames in os.walk(self._dir):
            here = Path(dirpath)
            links += [here / n for n in dirnames + filenames if (here / n).is_symlink()]
        if links:
            raise UnsafeArchiveError(
                describe(
                    "export folder holds symbolic links; refusing it",
                    file=self._dir,
                    member=links[0].relative_to(self._dir).as_posix(),
                    found=f"{len(links)} link(s)",
                    fix="copy the real files into the export folder instead of linking them",
                )
            )

    # -- ZIPs ---------------------------------------------------------------------------------
    def _open_zip(self) -> None:
        try:
            archive = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            raise ExportError(
                describe(
                    f"not a readable ZIP ({exc})",
                    file=self.path,
                    fix="pass the sam2_export_*.zip the SAM2 demo wrote, or its extracted folder",
                )
            ) from None
        label = str(self.path)
        size = self.path.stat().st_size
        depth = 0
        try:
            while True:
                check_archive(archive, label, self.limits, size)
                names = [n for n in archive.namelist() if not JUNK.search(n)]
                annotations = [n for n in names if n.rpartition("/")[2] == "annotations.json"]
                if len(annotations) == 1:
                    self._zip = archive
                    self.label = label
                    self.root = annotations[0][: -len("annotations.json")]
                    return
                if len(annotations) > 1:
                    raise ExportError(
                        describe(
                            "archive holds several annotations.json",
                            file=label,
                            expected="one export (one annotations.json) per ZIP",
                            found=", ".join(annotations[:5]),
                            fix="pass each export separately (one ZIP or folder per video)",
                        )
                    )
                inner = [n for n in names if n.lower().endswith(".zip")]
                if len(inner) != 1:
                    raise ExportError(
                        describe(
                            "no annotations.json in the archive",
                            file=label,
                            expected="annotations.json (at the top, in one folder, or in one "
                            "ZIP inside)",
                            found=f"{len(inner)} ZIPs inside" if inner else "none",
                            fix="pass the sam2_export_*.zip the SAM2 demo wrote",
                        )
                    )
                if depth == self.limits.max_nesting:
                    raise _unsafe(
                        "ZIPs are nested deeper than allowed",
                        label,
                        inner[0],
                        expected=f"at most {self.limits.max_nesting} ZIP(s) inside the ZIP",
                        found="one more",
                        fix="pass the inner export ZIP itself, or "
                        + limit_flag("max_nesting", depth + 1),
                    )
                spool = _spool_member(archive, inner[0], label)
                self._spools.append(spool)
                size = spool.seek(0, io.SEEK_END)
                spool.seek(0)
                archive.close()
                label = f"{label}!{inner[0]}"
                depth += 1
                try:
                    archive = zipfile.ZipFile(spool)  # type: ignore[arg-type]
                except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                    raise ExportError(
                        describe(
                            f"nested ZIP is not readable ({exc})",
                            file=label,
                            fix="re-create the outer ZIP, or pass the inner export directly",
                        )
                    ) from None
        except BaseException:
            archive.close()
            self.close()
            raise

    # -- reading ------------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Member paths relative to the export root, junk (macOS metadata) left out."""
        if self._dir is not None:
            out = []
            for dirpath, dirnames, filenames in os.walk(self._dir):
                rel = Path(dirpath).relative_to(self._dir).as_posix()
                prefix = "" if rel == "." else rel + "/"
                dirnames[:] = sorted(d for d in dirnames if not JUNK.search(prefix + d + "/"))
                out.extend(prefix + f for f in filenames if not JUNK.search(prefix + f))
            return sorted(out)
        assert self._zip is not None
        n = len(self.root)
        return [
            name[n:]
            for name in self._zip.namelist()
            if name.startswith(self.root) and not name.endswith("/") and not JUNK.search(name)
        ]

    def has(self, member: str) -> bool:
        if self._dir is not None:
            return (self._dir / member).is_file()
        assert self._zip is not None
        try:
            self._zip.getinfo(self.root + member)
        except KeyError:
            return False
        return True

    def read(self, member: str) -> bytes:
        """One member's bytes (the ZIP's member, or the folder's file)."""
        if self._dir is not None:
            path = self._dir / member
            if path.is_symlink():
                raise UnsafeArchiveError(
                    describe(
                        "file is a symbolic link; refusing it",
                        file=self.label,
                        member=member,
                        fix="copy the real file into the export folder",
                    )
                )
            try:
                size = path.stat().st_size
                # The bound of a ZIP member holds for a folder's file too: one file is read
                # whole into memory (annotations.json, an image).
                if size > self.limits.max_member_bytes:
                    raise _unsafe(
                        "file is larger than the size limit of one member",
                        self.label,
                        member,
                        expected=f"at most {self.limits.max_member_bytes} bytes",
                        found=f"{size} bytes",
                        fix=_trusted("max_member_bytes", size),
                    )
                return path.read_bytes()
            except OSError as exc:
                raise ExportError(
                    describe(
                        f"cannot read the file ({exc.strerror or exc})",
                        file=self.label,
                        member=member,
                        fix="check the file exists and is readable",
                    )
                ) from None
        if self._zip is None:
            raise ExportError(
                describe(
                    "the export was closed",
                    file=self.label,
                    member=member,
                    fix="read images before calling Export.close() (or leave the with block)",
                )
            )
        try:
            info = self._zip.getinfo(self.root + member)
            # Never more than the declared size: ZipFile.read() inflates a member's whole stream
            # in one call, so a member forged to declare 100 bytes could still expand to GBs.
            with self._zip.open(info) as stream:
                return stream.read(info.file_size)
        except KeyError:
            raise ExportError(
                describe("no such member", file=self.label, member=self.root + member)
            ) from None
        except _READ_ERRORS as exc:
            raise _read_error(exc, self.label, self.root + member) from None

    def member(self, name: str) -> str:
        """How a member is named in messages (its path inside the archive or folder)."""
        return self.root + name

    def location(self, member: str) -> str:
        if self._dir is not None:
            return str(self._dir / member)
        return f"{self.label}!{self.root}{member}"

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()
            self._zip = None
        for spool in self._spools:
            spool.close()
        self._spools = []


def index_images(names: Sequence[str]) -> dict[int, str]:
    """Map frame index -> image member, from names like images/frame_000006.png, 000006.png,
    frames/frame_0006.jpg. Prefers images/ over frames/ over data/ over elsewhere, PNG over JPG."""
    best: dict[int, tuple[tuple[int, int, str], str]] = {}
    # String operations, not pathlib: this runs once per member (thousands).
    for name in names:
        folder, _, base = name.rpartition("/")
        stem, dot, suffix = base.rpartition(".")
        suffix = suffix.lower()
        if not dot or "." + suffix not in IMAGE_SUFFIXES:
            continue
        match = _TRAILING_NUMBER.search(stem)
        if not match:
            continue
        top = folder.partition("/")[0].lower()
        rank = (
            _IMAGE_DIRS.index(top) if top in _IMAGE_DIRS else len(_IMAGE_DIRS),
            0 if suffix == "png" else 1,
            name,
        )
        index = int(match.group(1))
        if index not in best or rank < best[index][0]:
            best[index] = (rank, name)
    return {index: name for index, (_, name) in best.items()}
