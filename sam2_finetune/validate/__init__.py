"""Validate: data-quality rules over SAM2 exports and converted datasets, and a report to act on.

>>> from sam2_finetune.validate import ValidateOptions, validate
>>> report = validate(ValidateOptions(inputs=["sample_data/kitchen.zip"], report="out/report.md"))
... # doctest: +SKIP
>>> report.status, report.counts                                    # doctest: +SKIP
('warnings', {'error': 0, 'warning': 5, 'info': 9})

The rules (``rules.RULES``) run in one pass over the frames of every input, read through one
record view (``records``); ``report`` turns the findings and statistics into Markdown, JSON and a
class-distribution chart. See ``docs/validate.md``.
"""

from __future__ import annotations

import json

from sam2_finetune.errors import OptionsError, describe
from sam2_finetune.outputs import atomic_write_bytes, atomic_write_text, ensure_writable
from sam2_finetune.validate.options import Severity, ValidateOptions
from sam2_finetune.validate.records import iter_videos
from sam2_finetune.validate.report import (
    ClassStats,
    DensityStats,
    ValidationReport,
    build_report,
    chart_path,
    class_chart_png,
    relabel_path,
    summary_text,
    to_markdown,
)
from sam2_finetune.validate.rules import RULES, Finding, run_rules

__all__ = [
    "RULES",
    "ClassStats",
    "DensityStats",
    "Finding",
    "Severity",
    "ValidateOptions",
    "ValidationReport",
    "validate",
    "validate_command",
]


def validate(options: ValidateOptions) -> ValidationReport:
    """Run every rule over ``options.inputs`` and return the report; write the Markdown report
    with its chart and relabel map beside it, and the JSON report, when ``options.report`` /
    ``options.json_report`` are set.

    Raises:
        ExportError, DatasetError: an input cannot be read at all.
        OutputExistsError: a report file exists and ``overwrite`` is false (checked before any
            input is read).
        OptionsError: a report path is a folder, or cannot be written.
    """
    outputs = []
    if options.report is not None:
        outputs += [options.report, chart_path(options.report), relabel_path(options.report)]
    if options.json_report is not None:
        outputs.append(options.json_report)
    for path in outputs:
        if path.is_dir():  # ensure_writable lets an empty folder through (for folder outputs)
            raise OptionsError(
                describe(
                    "a report is a file, but this path is a folder",
                    file=path,
                    field="json" if path == options.json_report else "report",
                    fix="pass a file name, e.g. out/report.md",
                )
            )
        ensure_writable(path, options.overwrite)

    findings, tally = run_rules(
        iter_videos(options.inputs, options.frames, options.limits), options
    )
    report = build_report(findings, tally, options)

    try:
        if options.report is not None:
            chart = chart_path(options.report)
            atomic_write_bytes(chart, class_chart_png(report.classes), options.overwrite)
            relabel = relabel_path(options.report)
            text = json.dumps(report.relabel, indent=2, ensure_ascii=False)
            atomic_write_text(relabel, text + "\n", options.overwrite)
            markdown = to_markdown(report, chart.name, options.examples)
            atomic_write_text(options.report, markdown, options.overwrite)
            report.outputs += [str(options.report), str(chart), str(relabel)]
        if options.json_report is not None:
            report.outputs.append(str(options.json_report))
            text = json.dumps(report.to_json(), indent=1, ensure_ascii=False)
            atomic_write_text(options.json_report, text + "\n", options.overwrite)
    except OSError as exc:
        raise OptionsError(
            describe(
                f"cannot write the report ({exc.strerror or exc})",
                file=exc.filename or options.report or options.json_report,
                fix="pass --report / --json paths in a folder you can write to",
            )
        ) from None
    return report


def validate_command(options: ValidateOptions) -> int:
    """CLI entry: print a summary; exit 0 when nothing reaches ``--fail-on``, else 1 (an input
    that cannot be read raises, which the CLI turns into exit status 2)."""
    report = validate(options)
    print(summary_text(report))
    return report.exit_code
