"""Shared test helpers: crafted SAM2 exports and hostile ZIP archives, built in milliseconds.

``make_export`` writes an export with exactly the JSON, members and layout a test asks for (the
realistic scenes come from :mod:`sam2_finetune.testing.synthetic`). ``write_raw_zip`` writes ZIP
structures byte by byte, so that tests can forge what ``zipfile`` refuses to write: declared
sizes that lie, entries sharing their data, gigabytes of zeros deflated without computing them.
"""

from __future__ import annotations

import atexit
import io
import json
import os
import shutil
import struct
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from sam2_finetune.masks import decode_compressed_counts, rle_encode

# Two cores are shared by the xdist workers: one torch thread each is faster than contention.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Tiny models built by tests go to a per-run cache, never the user's ~/.cache.
_CACHE = tempfile.mkdtemp(prefix="sam2-finetune-test-cache-")
os.environ["SAM2_FINETUNE_CACHE"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)

# --------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------


def mask_counts(mask: np.ndarray) -> np.ndarray:
    """Uncompressed column-major run lengths of a 0/1 array (via pycocotools)."""
    return decode_compressed_counts(rle_encode(mask)["counts"])


def sam2_string(mask: np.ndarray) -> str:
    """SAM2's ``mask_rle`` for a 0/1 array: its run lengths, space-separated."""
    return " ".join(str(int(v)) for v in mask_counts(mask))


def rect_mask(height: int, width: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def sam2_object(object_id: int, label: str, mask: np.ndarray, **extra: Any) -> dict[str, Any]:
    """An object entry as the SAM2 demo writes it: count string, box and area in mask space."""
    ys, xs = np.nonzero(mask)
    bbox = (
        [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]
        if xs.size
        else [0, 0, 0, 0]
    )
    entry = {
        "object_id": object_id,
        "label": label,
        "mask_rle": sam2_string(mask),
        "bbox": bbox,
        "area": int(mask.sum()),
        "confidence": 0.95,
    }
    entry.update(extra)
    return entry


def png_bytes(width: int = 8, height: int = 6, color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def jpg_bytes(width: int = 8, height: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 100, 50)).save(buffer, format="JPEG")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Crafted exports
# --------------------------------------------------------------------------------------------

VIDEO_W, VIDEO_H = 64, 48
SQUARE = rect_mask(256, 256, 40, 100, 20, 60)


def default_frames() -> list[dict[str, Any]]:
    """Frame 0 with a car and a lost (empty) person, frame 6 listed with no objects."""
    return [
        {
            "frame_index": 0,
            "timestamp_sec": 0.0,
            "objects": [
                sam2_object(1, "car", SQUARE),
                sam2_object(2, "person", np.zeros((256, 256), np.uint8)),
            ],
        },
        {"frame_index": 6, "timestamp_sec": 0.2, "objects": []},
    ]


def write_zip(
    path: Path,
    members: Sequence[tuple[str | zipfile.ZipInfo, bytes]],
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return path


def build_export(
    root: Path,
    name: str = "export.zip",
    *,
    frames: list[Any] | None = None,
    video: dict[str, Any] | None = None,
    annotations: Any = None,
    annotations_bytes: bytes | None = None,
    metadata: dict[str, Any] | bool | None = True,
    images: dict[str, bytes] | None = None,
    extra: dict[str, bytes] | None = None,
    layout: str = "zip",
) -> Path:
    """Write a small export under ``root`` and return its path.

    ``frames`` replaces the annotation list, ``video`` updates the video block, ``annotations``
    replaces the whole annotations.json value (``annotations_bytes`` its bytes). Images default
    to one PNG per frame with objects (``images/frame_{index:06d}.png``). ``layout``: ``zip``,
    ``folder``, ``rezipped`` (one folder down, plus macOS junk), ``nested`` (a ZIP in a ZIP),
    ``subfolder`` (a folder holding the export folder).
    """
    frames = default_frames() if frames is None else frames
    video_block = {
        "filename": "session_ab12.mp4",
        "width": VIDEO_W,
        "height": VIDEO_H,
        "source_fps": 30.0,
        "total_frames": 12,
        "duration_sec": 0.4,
    }
    video_block.update(video or {})
    value = annotations
    if value is None:
        value = {
            "video": video_block,
            "export_config": {"target_fps": 5.0, "frame_indices": [0, 6]},
            "annotations": frames,
        }
    members: dict[str, bytes] = {
        "annotations.json": annotations_bytes
        if annotations_bytes is not None
        else json.dumps(value).encode()
    }
    if metadata is True:
        metadata = {
            "export_info": {"format_version": "1.0", "exporter": "SAM2 Demo Export Tool"},
            "video": {**video_block, "fps": 25.0},
            "export_config": {"target_fps": 5.0},
        }
    if metadata:
        members["metadata.json"] = json.dumps(metadata).encode()
    if images is None:
        images = {
            f"images/frame_{f['frame_index']:06d}.png": png_bytes()
            for f in frames
            if isinstance(f, dict) and f.get("objects")
        }
    members.update(images)
    members.update(extra or {})
    out = root / name
    if layout == "folder":
        for member, data in members.items():
            (out / member).parent.mkdir(parents=True, exist_ok=True)
            (out / member).write_bytes(data)
        return out
    if layout == "subfolder":
        inner = out / "my export (copy)"
        for member, data in members.items():
            (inner / member).parent.mkdir(parents=True, exist_ok=True)
            (inner / member).write_bytes(data)
        (out / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        return out
    if layout == "rezipped":
        items = [(f"my export (copy)/{m}", d) for m, d in members.items()]
        items += [
            ("my export (copy)/.DS_Store", b"\0\0\0\1Bud1"),
            ("__MACOSX/my export (copy)/._annotations.json", b"\0\5\26\7"),
            ("__MACOSX/my export (copy)/images/._frame_000000.png", b"\0\5\26\7"),
        ]
        return write_zip(out, items)
    if layout == "nested":
        inner = io.BytesIO()
        with zipfile.ZipFile(inner, "w") as archive:
            for member, data in members.items():
                archive.writestr(member, data)
        return write_zip(out, [("download/sam2_export_x.zip", inner.getvalue())])
    if layout != "zip":
        raise ValueError(f"unknown layout {layout!r}")
    return write_zip(out, list(members.items()))


@pytest.fixture
def make_export(tmp_path: Path) -> Callable[..., Path]:
    """``make_export(name="export.zip", **overrides)``: see :func:`build_export`."""

    def make(name: str = "export.zip", **overrides: Any) -> Path:
        return build_export(tmp_path, name, **overrides)

    return make


# --------------------------------------------------------------------------------------------
# Hostile archives, written byte by byte
# --------------------------------------------------------------------------------------------


@dataclass
class RawMember:
    """One entry as it will be written; the sizes and CRC are what the headers *declare*."""

    name: str
    data: bytes  # the stored (compressed) bytes
    file_size: int
    crc: int
    method: int = zipfile.ZIP_DEFLATED
    external_attr: int = 0o100644 << 16


def write_raw_zip(path: Path, members: Sequence[RawMember], central_copies: int = 1) -> Path:
    """A ZIP with exactly the given headers (no ZIP64). ``central_copies > 1`` lists every entry
    that many times under new names, all pointing at the same data (overlapping entries)."""
    out = io.BytesIO()
    offsets = []
    for m in members:
        offsets.append(out.tell())
        name = m.name.encode()
        out.write(
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                20,
                0,
                m.method,
                0,
                0x21,
                m.crc,
                len(m.data),
                m.file_size,
                len(name),
                0,
            )
        )
        out.write(name)
        out.write(m.data)
    cd_start = out.tell()
    entries = 0
    for copy in range(central_copies):
        for m, offset in zip(members, offsets, strict=True):
            name = (m.name if copy == 0 else f"{copy}_{m.name}").encode()
            out.write(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    (3 << 8) | 20,
                    20,
                    0,
                    m.method,
                    0,
                    0x21,
                    m.crc,
                    len(m.data),
                    m.file_size,
                    len(name),
                    0,
                    0,
                    0,
                    0,
                    m.external_attr,
                    offset,
                )
            )
            out.write(name)
            entries += 1
    cd_size = out.tell() - cd_start
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, entries, entries, cd_size, cd_start, 0))
    path.write_bytes(out.getvalue())
    return path


def _gf2_times(matrix: list[int], vector: int) -> int:
    total, i = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def crc32_of_zeros(n: int) -> int:
    """``zlib.crc32(bytes(n))`` without touching n bytes: the CRC register's update for a zero
    byte is linear, so apply its n-th power (by squaring, as zlib's crc32_combine does)."""
    one_bit = [0xEDB88320] + [1 << i for i in range(31)]
    operator = _gf2_square(_gf2_square(_gf2_square(one_bit)))  # one zero byte
    register = 0xFFFFFFFF
    while n:
        if n & 1:
            register = _gf2_times(operator, register)
        operator = _gf2_square(operator)
        n >>= 1
    return register ^ 0xFFFFFFFF


def deflated_zeros(mebibytes: int) -> bytes:
    """A raw deflate stream of ``mebibytes`` MiB of zeros, built from one compressed MiB: after a
    full flush the compressor's state is reset, so the same block bytes can be repeated."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(1 << 20)) + compressor.flush(zlib.Z_FULL_FLUSH)
    return block * mebibytes + b"\x03\x00"  # an empty final block


def zip_bomb(path: Path, members: int = 2, mebibytes: int = 4000) -> Path:
    """A real zip bomb: ``members`` entries each inflating to ``mebibytes`` MiB of zeros (valid
    CRCs), about 4 MB on disk per 4 GB of payload."""
    data = deflated_zeros(mebibytes)
    size = mebibytes << 20
    crc = crc32_of_zeros(size)
    names = ["annotations.json"] + [f"images/frame_{i:06d}.png" for i in range(1, members)]
    return write_raw_zip(path, [RawMember(n, data, size, crc) for n in names])


def forged_size_zip(path: Path, mebibytes: int = 256) -> Path:
    """annotations.json declared as 100 bytes, its data inflating to ``mebibytes`` MiB."""
    return write_raw_zip(path, [RawMember("annotations.json", deflated_zeros(mebibytes), 100, 0)])


# --- Model tests -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny matrices: with 2 threads on 2 shared cores a step is ~10x slower than with 1."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    """family -> a tiny model folder built once per session (lazily, as tests ask)."""
    from sam2_finetune.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("tiny")
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = build_tiny_model(family, root / family)
        return built[family]

    return get


@pytest.fixture(scope="session")
def street_dataset(tmp_path_factory):
    """The street scene with its raw frames (no overlays), as a canonical dataset folder: the
    data of the train, evaluate and export tests (converted once per test process)."""
    from sam2_finetune.convert import ConvertOptions, convert

    sample = Path(__file__).resolve().parent.parent / "sample_data"
    out = tmp_path_factory.mktemp("street_scene_raw") / "hf"
    convert(
        ConvertOptions(
            exports=[sample / "street_scene.zip"],
            frames=[str(sample / "street_scene_frames")],
            to="hf",
            out=out,
        )
    )
    return out
