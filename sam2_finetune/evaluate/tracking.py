"""Track ids for predicted boxes: the same object keeps its id from frame to frame of a video.

A vision-language model answers each frame on its own, so its objects carry no identity. A SAM2
export needs one (``object_id`` is the track key that ``validate`` and ``split`` rely on), so
:class:`IouTracker` links the objects of consecutive frames by the overlap of their boxes:

- Only objects with the same label are linked (a car never becomes a person).
- Candidate pairs (a track, an object of the new frame) are scored by box IoU against the
  track's last box; pairs below ``iou_threshold`` are never linked. The rest are linked greedily,
  highest IoU first, each track and each object at most once: on two objects crossing, each
  keeps the track whose last box it overlaps most.
- A track not seen in a frame is kept for ``max_gap`` more frames (one missed answer does not
  split it); after that it ends, and an object that reappears gets a new id.
- An object linked to no track starts a new one; ids count up from 1 and are never reused.

Greedy matching, not the Hungarian algorithm: with same-label gating and a threshold the two
differ only when one object overlaps two tracks almost equally, where neither is reliably right,
and greedy needs no scipy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sam2_finetune.answer_formats import AnswerObject

__all__ = ["IOU_THRESHOLD", "MAX_GAP", "IouTracker", "box_iou"]

IOU_THRESHOLD = 0.3
MAX_GAP = 2


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``(x, y, w, h)`` boxes (0 when either is empty).

    >>> box_iou((0, 0, 10, 10), (5, 0, 10, 10))
    0.3333333333333333
    """
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = min(ax + aw, bx + bw) - max(ax, bx)
    ih = min(ay + ah, by + bh) - max(ay, by)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


@dataclass
class _Track:
    track_id: int
    label: str
    bbox: tuple[float, float, float, float]
    last_frame: int


@dataclass
class IouTracker:
    """Assigns track ids frame by frame (see the module). Holds the live tracks between calls.

    >>> tracker = IouTracker()
    >>> tracker.update([AnswerObject("car", (0, 0, 10, 10))])
    [1]
    >>> tracker.update([AnswerObject("car", (2, 0, 10, 10)), AnswerObject("car", (50, 50, 5, 5))])
    [1, 2]
    """

    iou_threshold: float = IOU_THRESHOLD
    max_gap: int = MAX_GAP
    _tracks: list[_Track] = field(default_factory=list)
    _next_id: int = 1
    _frame: int = -1

    def update(self, objects: Sequence[AnswerObject]) -> list[int]:
        """The track id of each object of the next frame, in order."""
        self._frame += 1
        live = [t for t in self._tracks if self._frame - t.last_frame <= self.max_gap + 1]
        pairs = sorted(
            (
                (box_iou(track.bbox, obj.bbox), -t_index, -o_index)
                for t_index, track in enumerate(live)
                for o_index, obj in enumerate(objects)
                if track.label == obj.label
            ),
            reverse=True,
        )
        ids: list[int | None] = [None] * len(objects)
        taken: set[int] = set()
        for iou, t_neg, o_neg in pairs:
            if iou < self.iou_threshold or iou <= 0:
                break
            t_index, o_index = -t_neg, -o_neg
            if t_index in taken or ids[o_index] is not None:
                continue
            taken.add(t_index)
            track = live[t_index]
            ids[o_index] = track.track_id
            track.bbox, track.last_frame = tuple(objects[o_index].bbox), self._frame  # type: ignore[assignment]
        for o_index, obj in enumerate(objects):
            if ids[o_index] is None:
                track = _Track(self._next_id, obj.label, tuple(obj.bbox), self._frame)  # type: ignore[arg-type]
                self._next_id += 1
                live.append(track)
                ids[o_index] = track.track_id
        self._tracks = live
        return [int(i) for i in ids if i is not None]
