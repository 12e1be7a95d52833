"""The validation report: a typed value, its Markdown for people, its JSON for machines, and the
class-distribution chart (matplotlib, Agg, no display needed)."""

from __future__ import annotations

import io
import json
import math
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sam2_finetune.validate.options import ValidateOptions
from sam2_finetune.validate.rules import (
    RULES,
    SEVERITIES,
    UNNAMED,
    Finding,
    Tally,
    variant_groups,
)

Status = Literal["pass", "warnings", "errors"]


@dataclass(frozen=True)
class ClassStats:
    """One label over every input: visible objects, frames, videos and tracks it appears in, and
    its mask areas as a share of the image (0-1)."""

    label: str
    objects: int
    frames: int
    videos: int
    tracks: int
    area_mean: float
    area_std: float
    area_min: float
    area_max: float


@dataclass(frozen=True)
class DensityStats:
    """Visible objects per frame, over frames with at least one (and all listed frames)."""

    frames: int
    frames_with_objects: int
    mean: float
    median: float
    p95: float
    max: int
    mean_all_frames: float


@dataclass
class ValidationReport:
    """What ``validate`` found. ``status`` is ``errors`` if any error, else ``warnings`` if any
    warning, else ``pass``; :attr:`exit_code` applies ``fail_on``."""

    inputs: list[str]
    fail_on: Literal["error", "warning"]
    status: Status
    counts: dict[str, int]  # per severity
    totals: dict[str, int]
    classes: list[ClassStats]
    density: DensityStats
    imbalance_ratio: float | None
    relabel: dict[str, str]
    recommendations: list[str]
    findings: list[Finding]
    outputs: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when nothing reaches ``fail_on``, else 1."""
        failing = self.counts["error"] + (
            self.counts["warning"] if self.fail_on == "warning" else 0
        )
        return 1 if failing else 0

    def by_code(self) -> dict[str, list[Finding]]:
        """Findings grouped by rule code, in the order of :data:`RULES`."""
        groups: dict[str, list[Finding]] = defaultdict(list)
        for finding in self.findings:
            groups[finding.code].append(finding)
        return {code: groups[code] for code in RULES if code in groups}

    def to_json(self) -> dict[str, Any]:
        """Everything, every finding included, as JSON-ready values."""
        data = asdict(self)
        data["exit_code"] = self.exit_code
        data["rules"] = {
            code: {"severity": r.severity, "scope": r.scope, "title": r.title}
            for code, r in RULES.items()
        }
        return data


def build_report(
    findings: list[Finding], tally: Tally, options: ValidateOptions
) -> ValidationReport:
    """Statistics from ``tally`` plus the findings, with recommendations."""
    counts = Counter(f.severity for f in findings)
    status: Status = "errors" if counts["error"] else "warnings" if counts["warning"] else "pass"
    classes = [_class_stats(label, c) for label, c in tally.classes.items()]
    classes.sort(key=lambda c: (-c.objects, c.label))
    imbalance = (
        classes[0].objects / classes[-1].objects
        if len(classes) >= 2 and classes[-1].objects
        else None
    )
    totals = {
        key: int(tally.totals[key])
        for key in (
            "videos",
            "distinct_videos",
            "frames",
            "frames_with_objects",
            "images",
            "overlay_images",
            "objects",
            "visible",
            "empty",
            "broken",
            "tracks",
        )
    }
    totals["classes"] = len(classes)
    relabel = relabel_map(tally)
    return ValidationReport(
        inputs=[str(p) for p in options.inputs],
        fail_on=options.fail_on,
        status=status,
        counts={s: int(counts[s]) for s in SEVERITIES},
        totals=totals,
        classes=classes,
        density=_density(tally),
        imbalance_ratio=imbalance,
        relabel=relabel,
        recommendations=recommendations(
            findings, classes, relabel, relabel_path(options.report) if options.report else None
        ),
        findings=findings,
    )


def _class_stats(label: str, c: Any) -> ClassStats:
    shares = np.frombuffer(c.shares, dtype=np.float64)
    return ClassStats(
        label=label,
        objects=c.objects,
        frames=c.frames,
        videos=len(c.videos),
        tracks=len(c.tracks),
        area_mean=float(shares.mean()),
        area_std=float(shares.std()),
        area_min=float(shares.min()),
        area_max=float(shares.max()),
    )


def _density(tally: Tally) -> DensityStats:
    visible = np.frombuffer(tally.frame_visible, dtype=np.uint32).astype(np.float64)
    annotated = visible[visible > 0]
    if annotated.size == 0:
        return DensityStats(int(visible.size), 0, 0.0, 0.0, 0.0, 0, 0.0)
    return DensityStats(
        frames=int(visible.size),
        frames_with_objects=int(annotated.size),
        mean=float(annotated.mean()),
        median=float(np.median(annotated)),
        p95=float(np.percentile(annotated, 95)),
        max=int(annotated.max()),
        mean_all_frames=float(visible.mean()),
    )


def relabel_map(tally: Tally) -> dict[str, str]:
    """Labels to rename: case/whitespace variants to their most frequent spelling, and the
    placeholder ``object_<id>`` to the name its track got later. A label map renames a label
    everywhere, so a placeholder is mapped only when every track carrying it got the same one
    name (``object_1`` is often another, never-named object in another video)."""
    mapping: dict[str, str] = {}
    for keep, variants in variant_groups(tally.labels).items():
        for v in variants:
            if v != keep:
                mapping[v] = keep
    renamed: dict[str, set[str]] = defaultdict(set)
    ambiguous: set[str] = set()
    for labels in tally.track_labels.values():
        names = [label for label in labels if not UNNAMED.match(label)]
        for label in labels:
            if UNNAMED.match(label):
                renamed[label].update(names)
                if len(names) != 1:  # a track that kept the placeholder, or got two names
                    ambiguous.add(label)
    for placeholder, names in renamed.items():
        if len(names) == 1 and placeholder not in ambiguous:
            name = next(iter(names))
            mapping[placeholder] = mapping.get(name, name)
    # convert --label-map refuses blank labels as keys or values: leave them to the user.
    return {a: b for a, b in sorted(mapping.items()) if a.strip() and b.strip()}


def recommendations(
    findings: list[Finding],
    classes: list[ClassStats],
    relabel: dict[str, str],
    relabel_file: Path | None = None,
) -> list[str]:
    """Concrete next steps, most severe first: one per rule that fired, with specifics.
    ``relabel_file`` is where the relabel map is written (beside the Markdown report)."""
    fired = {f.code for f in findings}
    order = sorted(fired, key=lambda c: (SEVERITIES.index(RULES[c].severity), list(RULES).index(c)))
    out = []
    for code in order:
        rule = RULES[code]
        if rule.severity == "info" and code not in ("tiny-object",):
            continue
        n = sum(1 for f in findings if f.code == code)
        text = f"**{rule.title}** ({n}, `{code}`): {rule.fix}."
        if code == "class-imbalance":
            text += " " + _resampling(classes)
        if code == "broken-mask":
            frames = len(
                {(f.source, f.video_id, f.frame_index) for f in findings if f.code == code}
            )
            text += (
                f" `convert` stops at a broken mask: pass `--drop-broken` to leave these {n} "
                f"object(s) in {frames} frame(s) out, or delete them from annotations.json (the "
                "JSON report lists each video, frame_index and object_id), or re-export the "
                "video."
            )
        out.append(text)
    if relabel:
        use = (
            f"The map is written to `{relabel_file}`: pass `sam2-finetune convert ... "
            f"--label-map {relabel_file}`"
            if relabel_file is not None
            else "Save the map below as `relabel.json` and pass `sam2-finetune convert ... "
            "--label-map relabel.json`"
        )
        out.append(
            "**Relabel** before converting: "
            + ", ".join(f"`{a}` -> `{b}`" for a, b in relabel.items())
            + f". {use} (`--normalize-labels` alone folds case and whitespace)."
        )
    if not out:
        out.append("Nothing to fix: the data passed every rule.")
    return out


def _resampling(classes: list[ClassStats]) -> str:
    """Repeat factors that bring each rare class near the median class count."""
    median = float(np.median([c.objects for c in classes]))
    factors = {c.label: math.ceil(median / c.objects) for c in classes if c.objects * 2 <= median}
    if not factors:
        return ""
    listed = ", ".join(f"`{label}` x{f}" for label, f in factors.items())
    return (
        f"Suggested oversampling (repeat frames of the class, with flips/crops/colour jitter): "
        f"{listed}."
    )


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------

_STATUS_TEXT = {"pass": "PASS", "warnings": "PASS WITH WARNINGS", "errors": "ERRORS"}


def to_markdown(report: ValidationReport, chart: str | None, examples: int = 5) -> str:
    """The report for people: summary, class distribution, statistics, one section per rule that
    fired (count and the first ``examples``), recommendations."""
    t = report.totals
    c = report.counts
    lines = [
        "# Data-quality report",
        "",
        f"**Result: {_STATUS_TEXT[report.status]}**: {c['error']} error(s), "
        f"{c['warning']} warning(s), {c['info']} note(s). Exit status {report.exit_code} "
        f"(fail on {report.fail_on}).",
        "",
        "Inputs: " + ", ".join(f"`{p}`" for p in report.inputs),
        "",
        "| videos | frames listed | with objects | images | objects | visible | empty masks "
        "| broken masks | tracks | classes |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| {_videos(t)} | {t['frames']} | {t['frames_with_objects']} | {t['images']} "
        f"| {t['objects']} | {t['visible']} | {t['empty']} | {t['broken']} | {t['tracks']} "
        f"| {t['classes']} |",
        "",
    ]
    # Most severe first; within a severity, in the order of the rules table.
    groups = dict(
        sorted(report.by_code().items(), key=lambda kv: SEVERITIES.index(RULES[kv[0]].severity))
    )
    if groups:
        lines += ["| rule | severity | count | what |", "| --- | --- | ---: | --- |"]
        for code, items in groups.items():
            rule = RULES[code]
            lines.append(f"| [`{code}`](#{code}) | {rule.severity} | {len(items)} | {rule.title} |")
        lines.append("")

    lines += ["## Class distribution", ""]
    if chart:
        lines += [f"![class distribution]({chart})", ""]
    if report.classes:
        total = sum(cl.objects for cl in report.classes)
        lines += [
            "| class | objects | share | frames | videos | tracks |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for cl in report.classes:
            lines.append(
                f"| {_cell(cl.label)} | {cl.objects} | {cl.objects / total:.1%} | {cl.frames} "
                f"| {cl.videos} | {cl.tracks} |"
            )
        lines.append("")
        if report.imbalance_ratio is not None:
            most, least = report.classes[0], report.classes[-1]
            lines += [
                f"Imbalance (most / least frequent): **{report.imbalance_ratio:.1f}:1** "
                f"({_cell(most.label)} {most.objects}, {_cell(least.label)} {least.objects}).",
                "",
            ]
    else:
        lines += ["No visible objects.", ""]

    lines += ["## Mask areas and density", ""]
    if report.classes:
        lines += [
            "Mask area as a share of the image, per class:",
            "",
            "| class | n | mean | std | min | max |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for cl in report.classes:
            lines.append(
                f"| {_cell(cl.label)} | {cl.objects} | {cl.area_mean:.2%} | {cl.area_std:.2%} "
                f"| {cl.area_min:.2%} | {cl.area_max:.2%} |"
            )
        lines.append("")
    d = report.density
    lines += [
        f"Visible objects per frame (over the {d.frames_with_objects} frames with visible "
        "objects): "
        f"mean {d.mean:.2f}, median {d.median:g}, 95th percentile {d.p95:g}, max {d.max}; "
        f"over all {d.frames} listed frames: mean {d.mean_all_frames:.2f}.",
        "",
        "## Findings",
        "",
    ]
    if not groups:
        lines += ["No rule fired.", ""]
    for code, items in groups.items():
        rule = RULES[code]
        lines += [
            f'<a id="{code}"></a>',
            f"### {rule.title} (`{code}`, {rule.severity}, {len(items)})",
            "",
        ]
        for f in items[:examples]:
            lines.append(f"- {_where(f)}{f.message}")
        if len(items) > examples:
            lines.append(f"- ... and {len(items) - examples} more (all in the JSON report)")
        suggestions = list(dict.fromkeys(f.suggestion for f in items))
        lines += ["", "Fix: " + "; ".join(suggestions[:examples]) + ".", ""]

    lines += ["## Recommendations", ""]
    lines += [f"{i}. {text}" for i, text in enumerate(report.recommendations, 1)]
    if report.relabel:
        lines += [
            "",
            "Relabel map (JSON):",
            "",
            "```json",
            json.dumps(report.relabel, indent=2, ensure_ascii=False),
            "```",
        ]
    return "\n".join(lines) + "\n"


def _videos(totals: dict[str, int], unit: str = "") -> str:
    """Distinct videos, and the parts they were cut into when a ``DatasetDict`` split them."""
    distinct, parts = totals["distinct_videos"], totals["videos"]
    counted = f"{distinct} {unit}".rstrip()
    return counted if distinct == parts else f"{counted} (in {parts} split parts)"


def _where(f: Finding) -> str:
    parts = []
    if f.video_id:
        parts.append(f"`{f.video_id}`" + (f" ({f.split})" if f.split else ""))
    if f.frame_index is not None:
        parts.append(f"frame {f.frame_index}")
    if f.track_id is not None and "track " not in f.message:
        parts.append(f"track {f.track_id}")
    if f.label is not None and f.track_id is not None and "track " not in f.message:
        parts.append(f"({_cell(f.label)})")
    return " ".join(parts) + ": " if parts else ""


def _cell(label: str) -> str:
    """A label shown in Markdown: quoted so whitespace variants stay visible; pipes escaped."""
    return "`" + label.replace("|", "\\|").replace("`", "'") + "`"


def summary_text(report: ValidationReport) -> str:
    """A few lines for the terminal."""
    c = report.counts
    lines = [
        f"{_STATUS_TEXT[report.status]}: {c['error']} error(s), {c['warning']} warning(s), "
        f"{c['info']} note(s) over {_videos(report.totals, 'video(s)')}, "
        f"{report.totals['frames']} frames, {report.totals['objects']} objects"
    ]
    for code, items in report.by_code().items():
        rule = RULES[code]
        if rule.severity != "info":
            lines.append(f"  {rule.severity:7} {code:22} {len(items):6}  {items[0].message}")
    lines += [f"  wrote {p}" for p in report.outputs]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Chart
# --------------------------------------------------------------------------------------------


def class_chart_png(classes: list[ClassStats], max_classes: int = 40) -> bytes:
    """A horizontal bar chart of visible objects per class, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = classes[:max_classes]
    height = 1.2 + 0.3 * max(len(shown), 1)
    figure = Figure(figsize=(7, height), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    labels = [repr(c.label) for c in shown][::-1]
    counts = [c.objects for c in shown][::-1]
    bars = ax.barh(range(len(shown)), counts, color="#4878a8")
    ax.set_yticks(range(len(shown)), labels)
    ax.bar_label(bars, padding=2, fontsize=8)
    ax.set_xlabel("visible objects")
    title = "Class distribution"
    if len(classes) > max_classes:
        title += f" (top {max_classes} of {len(classes)})"
    ax.set_title(title)
    ax.margins(x=0.12)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def chart_path(report_path: Path) -> Path:
    """Where the chart goes: beside the Markdown, ``<stem>_classes.png``."""
    return report_path.with_name(f"{report_path.stem}_classes.png")


def relabel_path(report_path: Path) -> Path:
    """Where the relabel map goes: beside the Markdown, ``<stem>_relabel.json``, ready for
    ``convert --label-map`` (``{}`` when nothing needs renaming)."""
    return report_path.with_name(f"{report_path.stem}_relabel.json")
