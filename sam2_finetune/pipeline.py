"""``sam2-finetune run PIPELINE.yaml``: every stage, from SAM2 exports to an exported model.

A pipeline file names the exports (and their raw frames) once, then holds one section per stage.
Each section *is* that stage's own option model minus the paths the pipeline wires between stages
(built from the model's fields, so an option is declared once, in its stage, and documented
there): ``validate`` takes :class:`~sam2_finetune.validate.ValidateOptions`' options, ``convert``
:class:`~sam2_finetune.convert.ConvertOptions`', ``split``
:class:`~sam2_finetune.split.SplitOptions`', ``train`` a preset, a config file and ``--set``
overrides as ``sam2-finetune train`` takes them, ``evaluate`` and ``export`` their stages' options.

Everything is written under ``out``::

    OUT/
      pipeline.yaml         the pipeline as resolved (every option spelled out)
      pipeline_state.json   per stage: fingerprint, status, seconds, what it produced
      validate/             report.md, report.json, the class chart, report_relabel.json
      dataset/              the canonical Hugging Face dataset (convert)
      split/                the DatasetDict and split_manifest.json
      run/                  the training run (checkpoints, best/, metrics.jsonl, TensorBoard)
      evaluation/           metrics.json, predictions, pictures, summary.md
      export/               the exported model, its card and deploy/ files

Re-running is cheap and safe: a stage whose fingerprint (its options, the fingerprint of the
stage it reads from, and the size and modification time of every input file) matches the state
file's, and whose outputs are still there, is skipped; a changed stage and everything after it
run again. A training run stopped part-way (Ctrl-C, a killed job) resumes from its latest
complete checkpoint when nothing before it changed. ``force`` runs every stage again.

Every option model is built before the first stage runs, so a mistake anywhere in the file is
reported at once, before hours of training.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from sam2_finetune.convert import ConvertOptions
from sam2_finetune.errors import (
    DatasetError,
    OptionsError,
    describe,
    dotted_name,
    format_validation_error,
)
from sam2_finetune.evaluate.options import EvaluateOptions
from sam2_finetune.export.options import ExportOptions
from sam2_finetune.files import read_yaml
from sam2_finetune.ingest.read import FRAMES_HELP
from sam2_finetune.outputs import atomic_write_text
from sam2_finetune.split import SplitOptions
from sam2_finetune.validate import ValidateOptions

__all__ = [
    "STAGES",
    "PipelineOptions",
    "PipelineResult",
    "RunOptions",
    "load_pipeline",
    "run_command",
    "run_pipeline",
]

STATE_NAME = "pipeline_state.json"
RESOLVED_NAME = "pipeline.yaml"
STAGES = ("validate", "convert", "split", "train", "evaluate", "export")
# Where each stage writes under OUT (one place, used to wire the stages and to check outputs).
FOLDERS = {
    "validate": "validate",
    "convert": "dataset",
    "split": "split",
    "train": "run",
    "evaluate": "evaluation",
    "export": "export",
}


def _section(
    name: str, options: type[BaseModel], wired: Iterable[str], doc: str
) -> type[BaseModel]:
    """``options``' fields minus ``wired`` (the paths the pipeline fills in), as a model."""
    skip = set(wired)
    fields: dict[str, Any] = {
        key: (info.annotation, info)
        for key, info in options.model_fields.items()
        if key not in skip
    }
    model = create_model(name, __config__=ConfigDict(extra="forbid"), __doc__=doc, **fields)
    return model


ValidateSection = _section(
    "ValidateSection",
    ValidateOptions,
    ("inputs", "frames", "report", "json_report", "overwrite", "limits"),
    "validate's options (see `sam2-finetune validate --help`) but its inputs and report paths.",
)
ConvertSection = _section(
    "ConvertSection",
    ConvertOptions,
    ("exports", "to", "out", "frames", "overwrite", "limits", "json_output"),
    "convert's options (`sam2-finetune convert --help`) but its inputs, output and format.",
)
SplitSection = _section(
    "SplitSection",
    SplitOptions,
    ("dataset", "out", "overwrite", "json_output"),
    "split's options (`sam2-finetune split --help`) but its input and output.",
)
EvaluateSection = _section(
    "EvaluateSection",
    EvaluateOptions,
    ("model", "data", "frames", "out", "overwrite", "json_output"),
    "evaluate's options (`sam2-finetune evaluate --help`) but the model, data and output.",
)
ExportSection = _section(
    "ExportSection",
    ExportOptions,
    ("run", "out", "evaluation", "overwrite", "json_output"),
    "export's options (`sam2-finetune export --help`) but the run, evaluation and output.",
)


class TrainSection(BaseModel):
    """The training config as `sam2-finetune train` takes it: a preset, a YAML file over it,
    then ``--set`` overrides; the pipeline sets ``data.dataset`` and ``output.run_dir``."""

    model_config = ConfigDict(extra="forbid")

    preset: str | None = Field("quick_test", description="Preset name or path (presets/).")
    config: Path | None = Field(None, description="A training config YAML merged over the preset.")
    set: list[str] = Field(
        default_factory=list, description="Overrides as `--set` takes them: a.b=value."
    )


class PipelineOptions(BaseModel):
    """One pipeline file (see the module)."""

    model_config = ConfigDict(extra="forbid")

    out: Path = Field(description="Folder every stage writes under, and the state file.")
    exports: list[Path] = Field(
        min_length=1, description="SAM2 export ZIPs or folders (one per video), or folders of them."
    )
    frames: list[str] | None = Field(None, description=FRAMES_HELP)
    use_relabel: bool = Field(
        True,
        description="Convert with validate's suggested relabel map (report_relabel.json) "
        "unless convert.label_map is set.",
    )
    validate_: ValidateSection = Field(  # type: ignore[valid-type]
        default_factory=ValidateSection, alias="validate"
    )
    convert: ConvertSection = Field(default_factory=ConvertSection)  # type: ignore[valid-type]
    split: SplitSection = Field(default_factory=SplitSection)  # type: ignore[valid-type]
    train: TrainSection = Field(default_factory=TrainSection)
    evaluate: EvaluateSection = Field(default_factory=EvaluateSection)  # type: ignore[valid-type]
    export: ExportSection = Field(default_factory=ExportSection)  # type: ignore[valid-type]


class RunOptions(BaseModel):
    """``sam2-finetune run``: the options of the command (the pipeline's are in its file)."""

    model_config = ConfigDict(extra="forbid")

    pipeline: Path = Field(
        description="The pipeline YAML file (presets/pipelines/ has examples).",
        json_schema_extra={"positional": True},
    )
    force: bool = Field(False, description="Run every stage again, even when unchanged.")
    json_output: bool = Field(
        False, alias="json", description="Print the result as JSON instead of text."
    )


@dataclass
class StageOutcome:
    """One stage of a run: ``ran`` / ``skipped`` (unchanged) / ``resumed`` (training)."""

    name: str
    status: str
    seconds: float
    fingerprint: str
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass
class PipelineResult:
    """What :func:`run_pipeline` did, stage by stage, and where everything is."""

    out: Path
    state_path: Path
    stages: list[StageOutcome]
    seconds: float

    def stage(self, name: str) -> StageOutcome:
        """The outcome of stage ``name``."""
        return next(s for s in self.stages if s.name == name)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON for ``run --json``."""
        return {
            "out": str(self.out),
            "state": str(self.state_path),
            "seconds": self.seconds,
            "stages": [vars(s) for s in self.stages],
        }


# --------------------------------------------------------------------------------------------
# Loading


def load_pipeline(path: str | Path) -> PipelineOptions:
    """Read and check a pipeline file; relative paths in it are relative to the current folder
    (as in training configs and presets), so one file runs from the project's root.

    Raises :class:`OptionsError` naming the file and every problem at once.
    """
    path = Path(path)
    data = read_yaml(path, "pipeline file", expected="sections: out, exports, validate, ...")
    try:
        options = PipelineOptions.model_validate(data)
    except ValidationError as error:
        raise OptionsError(
            format_validation_error(
                error,
                f"pipeline file {path}",
                PipelineOptions,
                fix="correct the options named above (presets/pipelines/demo.yaml is an example)",
            )
        ) from None
    _stage_options(options)  # every stage's options checked now, not after hours of training
    return options


def folder(options: PipelineOptions, stage: str) -> Path:
    """Where ``stage`` writes under the pipeline's ``out``."""
    return Path(options.out) / FOLDERS[stage]


def _stage_options(options: PipelineOptions) -> dict[str, Any]:
    """Every stage's own option model, built from the sections and the wired paths."""
    exports = options.exports
    frames = options.frames
    report = folder(options, "validate") / "report.md"
    built: dict[str, Any] = {}
    convert_section = options.convert.model_dump(exclude_unset=True)
    if convert_section.get("label_map") is None and options.use_relabel:
        convert_section["label_map"] = report.parent / "report_relabel.json"
    stages: list[tuple[str, type[BaseModel], dict[str, Any]]] = [
        (
            "validate",
            ValidateOptions,
            {
                **options.validate_.model_dump(exclude_unset=True),
                "inputs": exports,
                "frames": frames,
                "report": report,
                "json_report": report.parent / "report.json",
                "overwrite": True,
            },
        ),
        (
            "convert",
            ConvertOptions,
            {
                **convert_section,
                "exports": exports,
                "to": "hf",
                "out": folder(options, "convert"),
                "frames": frames,
                "overwrite": True,
            },
        ),
        (
            "split",
            SplitOptions,
            {
                **options.split.model_dump(exclude_unset=True),
                "dataset": folder(options, "convert"),
                "out": folder(options, "split"),
                "overwrite": True,
            },
        ),
    ]
    stages += [
        (
            "evaluate",
            EvaluateOptions,
            {
                **options.evaluate.model_dump(exclude_unset=True),
                "model": folder(options, "train"),
                "data": folder(options, "split"),
                "out": folder(options, "evaluate"),
                "overwrite": True,
            },
        ),
        (
            "export",
            ExportOptions,
            {
                **options.export.model_dump(exclude_unset=True),
                "run": folder(options, "train"),
                "evaluation": folder(options, "evaluate"),
                "out": folder(options, "export"),
                "overwrite": True,
            },
        ),
    ]
    for name, model, values in stages:
        try:
            built[name] = model.model_validate(values)
        except ValidationError as error:
            raise OptionsError(
                format_validation_error(
                    error,
                    f"the pipeline's {name} section",
                    model,
                    fix=f"correct the {name} section of the pipeline file "
                    f"(`sam2-finetune {name} --help` lists the options)",
                    name=lambda loc, stage=name: f"{stage}.{dotted_name(loc)}",
                )
            ) from None
    built["train"] = _train_config(options)
    return built


def _train_config(options: PipelineOptions) -> Any:
    from sam2_finetune.train.config import load_config

    section = options.train
    return load_config(
        section.config,
        overrides=[
            *section.set,
            f"data.dataset={folder(options, 'split')}",
            f"output.run_dir={folder(options, 'train')}",
        ],
        preset=section.preset,
    )


# --------------------------------------------------------------------------------------------
# Fingerprints and state


def _file_stats(paths: Iterable[Path]) -> list[list[Any]]:
    """``[path, size, mtime_ns]`` of every file under ``paths``: cheap on big ZIPs and frame
    folders, and changed by any edit, copy or re-export."""
    stats = []
    for path in paths:
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for item in files:
            try:
                info = item.stat()
            except OSError:
                continue
            stats.append([str(item), info.st_size, info.st_mtime_ns])
    return stats


def _input_paths(options: PipelineOptions) -> list[Path]:
    paths = list(options.exports)
    for item in options.frames or []:
        paths.append(Path(item.rpartition("=")[2]))
    return paths


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able ``parts``."""
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _options_json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude={"overwrite"} & set(type(value).model_fields))
    return value


def read_state(out: Path) -> dict[str, Any]:
    """The state file of the pipeline writing to ``out`` (empty before the first run)."""
    path = out / STATE_NAME
    if not path.is_file():
        return {"stages": {}}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return {"stages": {}}  # a state file that cannot be read only costs a full re-run
    return state if isinstance(state.get("stages"), dict) else {"stages": {}}


def _save_state(out: Path, state: dict[str, Any]) -> None:
    atomic_write_text(out / STATE_NAME, json.dumps(state, indent=2) + "\n", overwrite=True)


# --------------------------------------------------------------------------------------------
# The stages


def _run_validate(options: ValidateOptions) -> dict[str, Any]:
    from sam2_finetune.validate import validate
    from sam2_finetune.validate.report import summary_text

    report = validate(options)
    print(summary_text(report))
    facts = {
        "status": report.status,
        "counts": report.counts,
        "fail_on": options.fail_on,
        "report": str(options.report),
        "relabel": report.relabel,
    }
    if report.exit_code != 0:
        raise DatasetError(
            describe(
                f"validation found {report.counts['error']} error(s) and "
                f"{report.counts['warning']} warning(s) (fail_on: {options.fail_on}); the "
                "pipeline stops before converting",
                file=options.report,
                fix="correct the exports as the report says, or relax validate.fail_on in "
                "the pipeline file, then run it again",
            )
        )
    return facts


def _run_convert(options: ConvertOptions) -> dict[str, Any]:
    from sam2_finetune.convert import convert

    if options.label_map is not None and not options.label_map.is_file():
        options = options.model_copy(update={"label_map": None})
    result = convert(options)
    print(f"  {result.rows} rows, {result.objects} objects, labels {result.labels} -> {result.out}")
    for note in result.warnings:
        print(f"  warning: {note}")
    return {
        "rows": result.rows,
        "objects": result.objects,
        "labels": result.labels,
        "overlay_rows": result.overlay_rows,
        "out": str(result.out),
    }


def _run_split(options: SplitOptions) -> dict[str, Any]:
    import warnings

    from sam2_finetune.split import SplitWarning, format_split, split

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SplitWarning)  # listed in result.warnings instead
        result = split(options)
    print(format_split(result))
    for note in result.warnings:
        print(f"  warning: {note}")
    return {
        "sizes": result.sizes,
        "dropped": result.dropped,
        "leakage": "none" if result.leakage.ok else "found",
        "out": str(result.out),
    }


def _run_train(config: Any, resume: bool) -> dict[str, Any]:
    from sam2_finetune.train.callbacks import read_metrics
    from sam2_finetune.train.run import format_result, train

    if not resume:
        config = config.model_copy(
            update={"output": config.output.model_copy(update={"overwrite": True})}
        )
    result = train(config, resume=True if resume else None)
    print(format_result(result))
    losses = [r["eval_loss"] for r in read_metrics(result.run_dir) if "eval_loss" in r]
    return {
        "run_dir": str(result.run_dir),
        "best_dir": str(result.best_dir) if result.best_dir else None,
        "steps": result.global_step,
        "stopped": result.stopped,
        "best_metric": result.best_metric,
        "eval_loss": [losses[0], losses[-1]] if losses else None,
    }


def _run_evaluate(options: EvaluateOptions) -> dict[str, Any]:
    from sam2_finetune.evaluate import evaluate
    from sam2_finetune.evaluate.run import format_result as format_evaluation

    result = evaluate(options)
    print(format_evaluation(result))
    return {
        "examples": result.examples,
        "headline": result.headline,
        "metrics": {k: v for k, v in result.metrics.items() if "/" not in k},
        "baselines": {
            name: {k: v for k, v in values.items() if "/" not in k}
            for name, values in result.baselines.items()
        },
        "below_baselines": result.below_baselines,
        "out": str(result.out_dir),
    }


def _run_export(options: ExportOptions) -> dict[str, Any]:
    from sam2_finetune.export import export
    from sam2_finetune.export import format_result as format_export

    result = export(options)
    print(format_export(result))
    return {
        "kind": result.kind,
        "out": str(result.out_dir),
        "size_bytes": result.size_bytes,
        "hub_url": result.hub_url,
    }


def _run_stage(name: str, options: Any, resume: bool) -> dict[str, Any]:
    if name == "validate":
        return _run_validate(options)
    if name == "convert":
        return _run_convert(options)
    if name == "split":
        return _run_split(options)
    if name == "train":
        return _run_train(options, resume)
    if name == "evaluate":
        return _run_evaluate(options)
    return _run_export(options)


def _train_resumable(run_dir: Path) -> bool:
    from sam2_finetune.train.run import complete_checkpoints

    return run_dir.is_dir() and bool(complete_checkpoints(run_dir))


# --------------------------------------------------------------------------------------------
# Running


def run_pipeline(
    options: PipelineOptions | str | Path,
    *,
    force: bool = False,
    log: Callable[[str], None] = print,
) -> PipelineResult:
    """Run every stage of ``options`` (a :class:`PipelineOptions` or a pipeline file), skipping
    the unchanged ones (see the module); the stages' own errors stop it with their messages.

    >>> result = run_pipeline("presets/pipelines/demo.yaml")  # doctest: +SKIP
    >>> result.stage("train").facts["best_dir"]               # doctest: +SKIP
    """
    if not isinstance(options, PipelineOptions):
        options = load_pipeline(options)
    started = time.perf_counter()
    built = _stage_options(options)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    _write_resolved(options, out)
    state = read_state(out)
    inputs = _file_stats(_input_paths(options))
    upstream = ""
    outcomes: list[StageOutcome] = []
    upstream_ran = False  # a stage that ran feeds new outputs to every stage after it
    for name in STAGES:
        if name not in built:
            continue
        stage_options = built[name]
        extra: list[Any] = []
        if name == "validate":
            extra = [inputs]
        elif name == "convert":
            extra = [inputs, _file_stats([stage_options.label_map])]
            extra = extra if stage_options.label_map is not None else [inputs]
        print_name = f"== {name}"
        mine = fingerprint(name, _options_json(stage_options), upstream, *extra)
        upstream = mine
        previous = state["stages"].get(name, {})
        unchanged = previous.get("fingerprint") == mine and folder(options, name).exists()
        if unchanged and previous.get("status") == "done" and not force and not upstream_ran:
            log(f"{print_name}: unchanged, skipped ({folder(options, name)})")
            outcomes.append(StageOutcome(name, "skipped", 0.0, mine, previous.get("facts", {})))
            continue
        resume = (
            name == "train"
            and unchanged
            and not force
            and _train_resumable(folder(options, "train"))
        )
        upstream_ran = True
        log(f"{print_name}{' (resuming)' if resume else ''}")
        state["stages"][name] = {"fingerprint": mine, "status": "running"}
        _save_state(out, state)
        began = time.perf_counter()
        try:
            facts = _run_stage(name, stage_options, resume)
        except BaseException as error:
            # The state says what stopped it (a training stopped part-way still resumes).
            stopped = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
            state["stages"][name] = {
                "fingerprint": mine,
                "status": stopped,
                "error": str(error).splitlines()[0] if str(error) else type(error).__name__,
            }
            _save_state(out, state)
            raise
        seconds = round(time.perf_counter() - began, 2)
        state["stages"][name] = {
            "fingerprint": mine,
            "status": "done",
            "seconds": seconds,
            "facts": facts,
        }
        _save_state(out, state)
        outcomes.append(StageOutcome(name, "resumed" if resume else "ran", seconds, mine, facts))
    return PipelineResult(
        out=out,
        state_path=out / STATE_NAME,
        stages=outcomes,
        seconds=round(time.perf_counter() - started, 2),
    )


def _write_resolved(options: PipelineOptions, out: Path) -> None:
    import yaml

    data = options.model_dump(mode="json", by_alias=True)
    text = (
        "# The pipeline as run, every option spelled out (paths relative to "
        f"{os.getcwd()}).\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    )
    atomic_write_text(out / RESOLVED_NAME, text, overwrite=True)


def format_result(result: PipelineResult) -> str:
    """What ``run`` prints at the end: each stage, what it found, where its output is."""
    lines = [f"pipeline   {result.out} ({result.seconds:.1f} s)"]
    for stage in result.stages:
        facts = stage.facts
        where = ""
        if stage.name == "validate":
            where = f"{facts.get('status')} {facts.get('counts')} -> {facts.get('report')}"
        elif stage.name == "convert":
            where = f"{facts.get('rows')} rows, labels {facts.get('labels')}"
        elif stage.name == "split":
            where = f"{facts.get('sizes')}, leakage {facts.get('leakage')}"
        elif stage.name == "train":
            where = (
                f"{facts.get('steps')} steps ({facts.get('stopped')}) -> {facts.get('best_dir')}"
            )
        elif stage.name == "evaluate":
            key = facts.get("headline", "map50")
            mine = (facts.get("metrics") or {}).get(key)
            prior = ((facts.get("baselines") or {}).get("prior") or {}).get(key)
            where = f"{key} {_number(mine)} (prior baseline {_number(prior)})"
            if facts.get("below_baselines"):
                where += f", NOT above {', '.join(facts['below_baselines'])}"
            where += f" -> {facts.get('out')}"
        elif stage.name == "export":
            where = f"{facts.get('kind')} -> {facts.get('out')}"
        lines.append(f"{stage.name:10} {stage.status:8} {stage.seconds:7.1f} s  {where}")
    lines.append(f"state      {result.state_path}")
    return "\n".join(lines)


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def run_command(options: RunOptions) -> int:
    """CLI entry: run the pipeline file, print where everything is."""
    result = run_pipeline(options.pipeline, force=options.force)
    if options.json_output:
        print(json.dumps(result.to_json(), indent=2, default=str))
    else:
        print(format_result(result))
    return 0
