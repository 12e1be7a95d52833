"""The training configuration: one pydantic model, loaded from YAML presets, overridable with --set.

A run is described by a :class:`TrainConfig` with five sections: ``model`` (family, checkpoint,
quantisation, LoRA, freezing), ``data`` (dataset, answer format, task mix, image resolution,
max length), ``training`` (schedule, optimiser, precision, evaluation, early stopping,
checkpoints), ``output`` (run folder, loggers) and ``hardware`` (device, processes).

:func:`load_config` reads a YAML file and/or a preset (``presets/<name>.yaml``), deep-merges
``--set a.b=c`` overrides (values parsed as YAML scalars: ``1e-4``, ``true``, ``null``, ``[a, b]``)
and validates the result. Every problem is reported at once in one
:class:`~sam2_finetune.errors.OptionsError`: the option's dotted path, the value found, what is
allowed (range or choices), and for a misspelt key the closest valid one. Rules between fields
(``epochs`` xor ``max_steps``, early stopping needs evaluation, a ``tiny:`` checkpoint of another
family, ...) are checked once each section's fields are valid, and reported the same way.
Defaults that depend on the family (checkpoint, answer format, LoRA targets, task mix) are filled
in, so :func:`save_resolved_config` writes exactly what a run used.

>>> config = load_config(preset="quick_test", overrides=["training.learning_rate=1e-4"])
>>> config.training.learning_rate
0.0001
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import annotated_types
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

from sam2_finetune.errors import OptionsError, describe
from sam2_finetune.models.memory import AttnImplementation, Method, Optimizer, PrecisionChoice
from sam2_finetune.models.quantization import Quantization
from sam2_finetune.models.registry import CHECKPOINT_FAMILY, FAMILIES
from sam2_finetune.models.tiny import TINY_PREFIX
from sam2_finetune.outputs import atomic_write_text

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
RESOLVED_CONFIG_NAME = "config.yaml"

# Kept as Literals (for choices in errors and help) and tested to equal the registries:
# models.registry.FAMILIES and answer_formats.ANSWER_FORMATS / TASKS.
Family = Literal[
    "llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm", "paligemma", "minicpm_v", "cogvlm",
    "gemma3",
]  # fmt: skip
AnswerFormatName = Literal[
    "json", "qwen2_vl", "qwen2_5_vl", "paligemma", "florence2", "internvl", "minicpm_v"
]
Task = Literal["detect", "ground", "segment", "count"]
Scheduler = Literal[
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt",
]  # fmt: skip
Logger = Literal["tensorboard", "wandb", "mlflow"]
Device = Literal["auto", "cpu", "cuda"]


def _override_shape(item: str) -> str:
    key, sep, _ = item.partition("=")
    if not sep or not key.strip():
        raise ValueError(
            "an override must look like SECTION.OPTION=VALUE, e.g. training.learning_rate=1e-4"
        )
    return item


# One ``--set`` item. Commands declare ``set: list[Override]``: besides the early message, the
# shape lets the CLI tell an override from the CONFIG argument written after ``--set a=b``.
Override = Annotated[str, AfterValidator(_override_shape)]


def _problem(loc: tuple[str | int, ...], value: Any, message: str) -> InitErrorDetails:
    # The message goes through the context so braces in it (regexes) are not format fields.
    return InitErrorDetails(
        type=PydanticCustomError("cross_field", "{message}", {"message": message}),
        loc=loc,
        input=value,
    )


def _raise_problems(title: str, problems: list[InitErrorDetails]) -> None:
    if problems:
        raise ValidationError.from_exception_data(title, problems)


class ModelSection(BaseModel):
    """Which model to fine-tune, and how (LoRA / full, quantisation, freezing)."""

    model_config = ConfigDict(extra="forbid")

    family: Family = Field(description="Model family (`sam2-finetune models` lists them).")
    checkpoint: str | None = Field(
        None,
        description="Hub id, local folder, or 'tiny:<family>' (a tiny offline model); "
        "default: the family's first checkpoint in the registry.",
    )
    trust_remote_code: bool = Field(
        False, description="Run the checkpoint's own Python code (minicpm_v, cogvlm need it)."
    )
    method: Method = Field("lora", description="lora (adapters only) or full fine-tuning.")
    quantization: Quantization = Field(
        "none", description="Load the LM's linear layers in 8-bit or 4-bit NF4 (QLoRA)."
    )
    lora_rank: int = Field(16, ge=1, le=1024, description="LoRA rank r.")
    lora_alpha: float = Field(32, gt=0, le=4096, description="LoRA alpha (scale = alpha / r).")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on LoRA inputs.")
    lora_targets: str | list[str] | None = Field(
        None,
        description="peft target_modules: a regex matched against full module names, or a list "
        "of name suffixes; default: the family's LM attention and MLP projections.",
    )
    freeze_vision_tower: bool = Field(True, description="Keep the vision encoder frozen.")
    freeze_projector: bool = Field(True, description="Keep the vision-to-LM projector frozen.")
    attn_implementation: AttnImplementation = Field(
        "sdpa", description="Attention kernel: sdpa, flash_attention_2 (needs flash-attn), eager."
    )

    @model_validator(mode="after")
    def _family_rules(self) -> ModelSection:
        family = FAMILIES[self.family]
        problems = []
        if self.checkpoint is None:
            self.checkpoint = family.default_checkpoint.name
        if self.checkpoint.startswith(TINY_PREFIX):
            tiny_family = self.checkpoint[len(TINY_PREFIX) :]
            if tiny_family != self.family and not family.trust_remote_code:
                problems.append(
                    _problem(
                        ("checkpoint",),
                        self.checkpoint,
                        f"a tiny model of family {tiny_family!r} cannot be trained as family "
                        f"{self.family!r}; use 'tiny:{self.family}' or set model.family="
                        f"{tiny_family}",
                    )
                )
            elif family.trust_remote_code:
                problems.append(
                    _problem(
                        ("checkpoint",),
                        self.checkpoint,
                        f"no tiny offline model exists for {self.family!r}: its modelling code "
                        "lives in the checkpoint repository (remote code); use a real checkpoint",
                    )
                )
        elif CHECKPOINT_FAMILY.get(self.checkpoint, self.family) != self.family:
            owner = CHECKPOINT_FAMILY[self.checkpoint]
            problems.append(
                _problem(
                    ("checkpoint",),
                    self.checkpoint,
                    f"this checkpoint belongs to family {owner!r}, not {self.family!r}; set "
                    f"model.family={owner}",
                )
            )
        if family.trust_remote_code and not self.trust_remote_code:
            problems.append(
                _problem(
                    ("trust_remote_code",),
                    False,
                    f"family {self.family!r} has no modelling code in transformers; its "
                    "checkpoints run their own code: read it, then set model.trust_remote_code="
                    "true",
                )
            )
        if self.quantization != "none" and self.method == "full":
            problems.append(
                _problem(
                    ("quantization",),
                    self.quantization,
                    "quantised weights cannot be trained: 8/4-bit needs method 'lora' "
                    "(QLoRA), or set model.quantization=none for full fine-tuning",
                )
            )
        if self.lora_targets is None and self.method == "lora":
            self.lora_targets = family.lora_target_modules
        if isinstance(self.lora_targets, str):
            try:
                re.compile(self.lora_targets)
            except re.error as exc:
                # peft would fail on it only once the model is loaded, minutes into a run.
                problems.append(
                    _problem(
                        ("lora_targets",),
                        self.lora_targets,
                        f"not a valid regular expression ({exc}); write a regex such as "
                        r"'.*language_model.*\.(q_proj|v_proj)' or a list of module-name "
                        "suffixes such as [q_proj, v_proj]",
                    )
                )
        _raise_problems("ModelSection", problems)
        return self


TaskWeight = Annotated[float, Field(ge=0, le=1000)]


class DataSection(BaseModel):
    """What to train on and how examples are built from it."""

    model_config = ConfigDict(extra="forbid")

    dataset: Path = Field(
        description="Canonical dataset folder (`convert --to hf`, optionally `split` into "
        "train/validation/test), or a folder of SAM2 export ZIPs that train converts first."
    )
    train_split: str = Field("train", min_length=1, description="Split to train on.")
    eval_split: str | None = Field(
        "validation", description="Split to evaluate on; null: no evaluation data."
    )
    answer_format: AnswerFormatName | None = Field(
        None, description="How answers are written; default: the family's pretraining format."
    )
    task_mix: dict[Task, TaskWeight] | None = Field(
        None,
        description="Relative weight of each task (detect, ground, segment, count); "
        "default: 0.4 / 0.3 / 0.2 / 0.1, without segment for formats without polygons.",
    )
    min_pixels: int | None = Field(
        None, ge=784, le=100_000_000, description="Qwen families: fewest pixels per image."
    )
    max_pixels: int | None = Field(
        None, ge=784, le=100_000_000, description="Qwen families: most pixels per image."
    )
    longest_edge: int | None = Field(
        None, ge=64, le=8192, description="Idefics3 / SmolVLM: longest image edge before tiling."
    )
    max_slices: int | None = Field(
        None, ge=0, le=64, description="MiniCPM-V: most image slices besides the whole image."
    )
    max_length: int = Field(
        2048, ge=64, le=131_072, description="Most tokens per example, image tokens included."
    )

    @model_validator(mode="after")
    def _data_rules(self) -> DataSection:
        problems = []
        if (
            self.min_pixels is not None
            and self.max_pixels is not None
            and self.min_pixels > self.max_pixels
        ):
            problems.append(
                _problem(
                    ("min_pixels",),
                    self.min_pixels,
                    f"min_pixels must be <= max_pixels ({self.max_pixels})",
                )
            )
        if self.task_mix is not None and sum(self.task_mix.values()) <= 0:
            problems.append(
                _problem(("task_mix",), self.task_mix, "at least one task needs a weight > 0")
            )
        _raise_problems("DataSection", problems)
        return self


class TrainingSection(BaseModel):
    """The optimisation schedule, evaluation, early stopping and checkpoints."""

    model_config = ConfigDict(extra="forbid")

    epochs: float | None = Field(
        None, gt=0, le=10_000, description="Passes over the training split (or set max_steps)."
    )
    max_steps: int | None = Field(
        None, ge=1, le=10_000_000, description="Optimizer steps (or set epochs)."
    )
    batch_size: int = Field(1, ge=1, le=4096, description="Examples per device per step.")
    gradient_accumulation_steps: int = Field(
        1, ge=1, le=4096, description="Steps whose gradients are summed before an update."
    )
    learning_rate: float = Field(2e-4, gt=0, le=1, description="Peak learning rate.")
    optimizer: Optimizer = Field(
        "adamw_torch", description="transformers optimizer name (8-bit ones need bitsandbytes)."
    )
    lr_scheduler: Scheduler = Field("cosine", description="Learning-rate schedule.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Fraction of steps warming up.")
    weight_decay: float = Field(0.0, ge=0, le=1, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, ge=0, le=1000, description="Gradient clipping; 0: off.")
    precision: PrecisionChoice = Field(
        "auto", description="auto: bf16 where the GPU supports it, else fp16; fp32 on CPU."
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in backward: less memory, ~30 % slower."
    )
    seed: int = Field(42, ge=0, le=2**32 - 1, description="Seed of data order, tasks, weights.")
    logging_steps: int = Field(10, ge=1, le=1_000_000, description="Log every N steps.")
    eval_steps: int | None = Field(
        None, ge=1, le=1_000_000, description="Evaluate every N steps; null: no evaluation."
    )
    save_steps: int = Field(500, ge=1, le=1_000_000, description="Save a checkpoint every N steps.")
    save_total_limit: int | None = Field(
        2, ge=1, le=1000, description="Checkpoints kept (the best one is always kept)."
    )
    metric_for_best_model: str | None = Field(
        None,
        pattern=r"^[a-z][a-z0-9_]*$",
        description="Evaluation metric picking the best checkpoint, e.g. loss or map50; "
        "null: keep the last.",
    )
    greater_is_better: bool | None = Field(
        None, description="Whether a larger metric is better; default: false for loss-like names."
    )
    early_stopping_patience: int | None = Field(
        None, ge=1, le=1000, description="Stop after N evaluations without improvement."
    )
    early_stopping_threshold: float = Field(
        0.0, ge=0, le=1e6, description="Smallest change that counts as an improvement."
    )

    @model_validator(mode="after")
    def _schedule_rules(self) -> TrainingSection:
        problems = []
        if (self.epochs is None) == (self.max_steps is None):
            which = "neither is set" if self.epochs is None else "both are set"
            problems.append(
                _problem(
                    ("max_steps",) if self.epochs is not None else ("epochs",),
                    self.max_steps if self.epochs is not None else None,
                    f"set exactly one of training.epochs and training.max_steps ({which}); "
                    "e.g. --set training.epochs=null training.max_steps=100",
                )
            )
        if self.metric_for_best_model is not None and self.eval_steps is None:
            problems.append(
                _problem(
                    ("metric_for_best_model",),
                    self.metric_for_best_model,
                    "choosing the best checkpoint needs evaluation: set training.eval_steps",
                )
            )
        if (
            self.metric_for_best_model is not None
            and self.eval_steps is not None
            and self.save_steps % self.eval_steps
        ):
            problems.append(
                _problem(
                    ("save_steps",),
                    self.save_steps,
                    f"must be a multiple of training.eval_steps ({self.eval_steps}) so that the "
                    "best checkpoint is one that was evaluated",
                )
            )
        if self.early_stopping_patience is not None:
            if self.eval_steps is None:
                problems.append(
                    _problem(
                        ("early_stopping_patience",),
                        self.early_stopping_patience,
                        "early stopping needs evaluation: set training.eval_steps",
                    )
                )
            if self.metric_for_best_model is None:
                problems.append(
                    _problem(
                        ("early_stopping_patience",),
                        self.early_stopping_patience,
                        "early stopping watches training.metric_for_best_model: set it (e.g. loss)",
                    )
                )
        elif self.early_stopping_threshold > 0:
            problems.append(
                _problem(
                    ("early_stopping_threshold",),
                    self.early_stopping_threshold,
                    "has no effect without training.early_stopping_patience",
                )
            )
        _raise_problems("TrainingSection", problems)
        return self


class OutputSection(BaseModel):
    """Where the run writes, and which loggers it reports to."""

    model_config = ConfigDict(extra="forbid")

    run_dir: Path | None = Field(
        None, description="Run folder; null: runs/<family>-<UTC timestamp>."
    )
    overwrite: bool = Field(False, description="Replace a non-empty run folder.")
    loggers: list[Logger] = Field(
        ["tensorboard"], description="Metric loggers (transformers report_to); [] for none."
    )


class HardwareSection(BaseModel):
    """Where training runs."""

    model_config = ConfigDict(extra="forbid")

    device: Device = Field("auto", description="auto: CUDA when available, else CPU.")
    num_processes: int = Field(
        1, ge=1, le=64, description="Data-parallel processes (GPUs; gloo on CPU)."
    )


class TrainConfig(BaseModel):
    """A complete, validated training run. Load it with :func:`load_config`."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field("", description="Free text: what this config is for.")
    model: ModelSection
    data: DataSection
    training: TrainingSection
    output: OutputSection = OutputSection()
    hardware: HardwareSection = HardwareSection()

    @model_validator(mode="after")
    def _cross_section_rules(self) -> TrainConfig:
        from sam2_finetune.answer_formats import ANSWER_FORMATS
        from sam2_finetune.tasks import default_task_mix

        family = FAMILIES[self.model.family]
        if self.data.answer_format is None:
            self.data.answer_format = family.answer_format  # type: ignore[assignment]
        problems = []
        resolution_options = {
            "min_pixels": "pixels",
            "max_pixels": "pixels",
            "longest_edge": "longest_edge",
            "max_slices": "slices",
        }
        for name, kind in resolution_options.items():
            value = getattr(self.data, name)
            if value is not None and family.resolution != kind:
                users = [f.name for f in FAMILIES.values() if f.resolution == kind]
                problems.append(
                    _problem(
                        ("data", name),
                        value,
                        f"applies only to families {users}; family {family.name!r} "
                        f"{_resolution_phrase(family.resolution)}: remove data.{name}",
                    )
                )
        fmt = ANSWER_FORMATS[self.data.answer_format]
        if self.data.task_mix is None:
            mix = default_task_mix(fmt.name)
            self.data.task_mix = {t: round(w, 6) for t, w in mix.items()}  # type: ignore[assignment]
        elif self.data.task_mix.get("segment", 0) > 0 and not fmt.supports_polygons:
            able = [n for n, f in ANSWER_FORMATS.items() if f.supports_polygons]
            problems.append(
                _problem(
                    ("data", "task_mix", "segment"),
                    self.data.task_mix["segment"],
                    f"answer format {fmt.name!r} has no polygon syntax, so it cannot train "
                    f"segment: set its weight to 0 or use one of {able}",
                )
            )
        if self.training.eval_steps is not None and self.data.eval_split is None:
            problems.append(
                _problem(
                    ("data", "eval_split"),
                    None,
                    "training.eval_steps asks for evaluation, which needs an evaluation split",
                )
            )
        _raise_problems("TrainConfig", problems)
        return self


def _resolution_phrase(kind: str) -> str:
    return {
        "fixed": "resizes every image to one fixed size",
        "pixels": "bounds images by min/max pixels",
        "longest_edge": "tiles images by their longest edge",
        "slices": "slices images",
    }[kind]


# --------------------------------------------------------------------------------------------
# Error messages: path, value, what is allowed, closest valid key.


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _field_at(model: type[BaseModel], loc: Sequence[str | int]) -> tuple[Any, list[Any]] | None:
    """The annotation and constraint metadata of the option at ``loc`` (None if not a field)."""
    annotation: Any = model
    metadata: list[Any] = []
    for part in loc:
        base = _unwrap(annotation)
        if isinstance(base, type) and issubclass(base, BaseModel):
            info: FieldInfo | None = base.model_fields.get(str(part))
            if info is None:
                return None
            annotation, metadata = info.annotation, list(info.metadata)
        elif get_origin(base) is dict:
            key_type, value_type = get_args(base)
            annotation = key_type if part == "[key]" else value_type
            metadata = []
        elif get_origin(base) in (list, tuple) and isinstance(part, int):
            annotation, metadata = get_args(base)[0], []
        else:
            return None
        if get_origin(annotation) is Annotated:
            for extra in get_args(annotation)[1:]:
                metadata.extend(extra.metadata if isinstance(extra, FieldInfo) else [extra])
    return annotation, metadata


def _choices(annotation: Any) -> list[Any]:
    base = _unwrap(annotation)
    if get_origin(base) in (list, tuple):
        base = _unwrap(get_args(base)[0])
    if get_origin(base) is Literal:
        return list(get_args(base))
    if get_origin(base) in (typing.Union, types.UnionType):
        return [c for arg in get_args(base) for c in _choices(arg)]
    return []


def allowed_values(model: type[BaseModel], loc: Sequence[str | int]) -> str | None:
    """What the option at ``loc`` accepts: ``"> 0 and <= 1"``, ``"one of: a, b"``; None if
    nothing more specific than its type is known.

    >>> allowed_values(TrainConfig, ("training", "learning_rate"))
    '> 0 and <= 1'
    """
    found = _field_at(model, loc)
    if found is None:
        return None
    annotation, metadata = found
    bounds = []
    for item in metadata:
        for attr, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
            value = getattr(item, attr, None)
            if value is not None and isinstance(item, annotated_types.BaseMetadata):
                bounds.append(
                    f"{symbol} {value:g}" if isinstance(value, float) else f"{symbol} {value}"
                )
        if isinstance(item, annotated_types.MinLen):
            bounds.append(f"at least {item.min_length} long")
        if isinstance(item, annotated_types.MaxLen):
            bounds.append(f"at most {item.max_length} long")
        pattern = getattr(item, "pattern", None)
        if pattern:
            bounds.append(f"matching {pattern}")
    choices = _choices(annotation)
    parts = []
    if choices:
        parts.append("one of: " + ", ".join(str(c) for c in choices))
    if bounds:
        parts.append(" and ".join(bounds))
    if parts and type(None) in get_args(annotation):
        parts.append("or null")
    return " ".join(parts) or None


def _valid_keys(model: type[BaseModel], prefix: Sequence[str | int]) -> list[str]:
    found = _field_at(model, prefix) if prefix else (model, [])
    if found is None:
        return []
    base = _unwrap(found[0])
    if isinstance(base, type) and issubclass(base, BaseModel):
        return list(base.model_fields)
    return []


def _all_option_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    paths = []
    for name, info in model.model_fields.items():
        base = _unwrap(info.annotation)
        if isinstance(base, type) and issubclass(base, BaseModel):
            paths += _all_option_paths(base, f"{prefix}{name}.")
        else:
            paths.append(prefix + name)
    return paths


def closest_key(model: type[BaseModel], loc: Sequence[str | int]) -> str | None:
    """The valid option path closest to the unknown ``loc`` (a typo, or a key in the wrong
    section), or None when nothing is close."""
    name = str(loc[-1])
    siblings = _valid_keys(model, loc[:-1])
    prefix = ".".join(str(p) for p in loc[:-1])
    close = difflib.get_close_matches(name, siblings, n=1, cutoff=0.6)
    if close:
        return f"{prefix}.{close[0]}" if prefix else close[0]
    # The right name in another section (learning_rate under model instead of training).
    everywhere = _all_option_paths(model)
    by_leaf = {p.rsplit(".", 1)[-1]: p for p in everywhere}
    close = difflib.get_close_matches(name, list(by_leaf), n=1, cutoff=0.8)
    if close:
        return by_leaf[close[0]]
    close = difflib.get_close_matches(".".join(str(p) for p in loc), everywhere, n=1, cutoff=0.6)
    return close[0] if close else None


def format_config_error(
    error: ValidationError, what: str, model: type[BaseModel] | None = None
) -> str:
    """Every problem of a config validation, one per line: dotted path, message, the value
    found, what is allowed, and for an unknown key the closest valid one.

    Extends :func:`sam2_finetune.cli.format_validation_error` (same layout) with the allowed
    range or choices read from the model's fields.
    """
    model = model or TrainConfig
    lines = []
    union_lines: dict[tuple[str | int, ...], int] = {}
    for item in error.errors():
        loc = tuple(item["loc"])
        if _is_union_member(model, loc):
            # One error per accepted type (model.lora_targets.str, ...list[str]): merge them
            # into one line at the option's own path.
            option, wanted = loc[:-1], item["msg"].removeprefix("Input should be ")
            if option in union_lines:
                lines[union_lines[option]] = lines[union_lines[option]].replace(
                    " (got ", f" or {wanted} (got ", 1
                )
            else:
                union_lines[option] = len(lines)
                path = ".".join(str(p) for p in option)
                lines.append(f"  - {path}: Input should be {wanted} (got {item.get('input')!r})")
            continue
        path = ".".join(str(p) for p in loc) or "(config)"
        value = item.get("input")
        if item["type"] == "extra_forbidden":
            hint = closest_key(model, loc)
            suggestion = f"; did you mean {hint!r}?" if hint else ""
            lines.append(f"  - {path}: unknown option (got {value!r}){suggestion}")
            continue
        if item["type"] == "missing":
            lines.append(f"  - {path}: required option is missing")
            continue
        shown = (
            "" if isinstance(value, dict) and item["type"] != "cross_field" else f" (got {value!r})"
        )
        line = f"  - {path}: {item['msg']}{shown}"
        # Literal errors already list the choices; cross-field messages state their rule.
        if item["type"] not in ("cross_field", "literal_error"):
            rule = allowed_values(model, loc)
            if rule:
                line += f"; allowed: {rule}"
        lines.append(line)
    lines.insert(0, f"{what}: {len(lines)} invalid option(s):")
    lines.append(
        "Fix: correct the options above in the YAML file or with --set KEY=VALUE; "
        "docs/config.md lists every option."
    )
    return "\n".join(lines)


def _is_union_member(model: type[BaseModel], loc: tuple[str | int, ...]) -> bool:
    """Whether ``loc`` ends in the tag pydantic adds per member of a union (``str``,
    ``list[str]``) rather than in an option name."""
    if len(loc) < 2 or _field_at(model, loc) is not None:
        return False
    parent = _field_at(model, loc[:-1])
    return parent is not None and get_origin(_unwrap(parent[0])) in (
        typing.Union,
        types.UnionType,
    )


# --------------------------------------------------------------------------------------------
# Loading: YAML + presets + --set overrides.


def list_presets() -> list[str]:
    """Preset names under ``presets/``: ``quick_test``, ``qwen2_5_vl/7b_qlora``, ..."""
    if not PRESETS_DIR.is_dir():
        return []
    return sorted(
        p.relative_to(PRESETS_DIR).with_suffix("").as_posix() for p in PRESETS_DIR.rglob("*.yaml")
    )


def preset_path(name: str) -> Path:
    """The file of preset ``name`` (``quick_test`` or ``qwen2_5_vl/7b_qlora``, ``.yaml``
    optional); :class:`OptionsError` naming the closest preset if there is none."""
    stem = name[:-5] if name.endswith(".yaml") else name
    path = PRESETS_DIR / f"{stem}.yaml"
    if path.is_file():
        return path
    names = list_presets()
    close = difflib.get_close_matches(stem, names, n=1, cutoff=0.5)
    raise OptionsError(
        describe(
            f"no preset named {name!r}",
            file=PRESETS_DIR,
            expected=" | ".join(names) or "YAML files under presets/",
            found=repr(name),
            fix=f"did you mean {close[0]!r}? Or give a config file path"
            if close
            else "name one of the presets above, or give a config file path",
        )
    )


def config_source(config: str | Path) -> Path:
    """A config argument as a file: an existing path, else a preset name."""
    path = Path(config)
    if path.is_file():
        return path
    stem = str(config)[:-5] if str(config).endswith(".yaml") else str(config)
    if path.is_dir() and not (PRESETS_DIR / f"{stem}.yaml").is_file():
        raise OptionsError(
            describe(
                "is a folder, not a YAML config file",
                file=path,
                fix="give the YAML file inside it, or a preset name: " + ", ".join(list_presets()),
            )
        )
    if path.suffix in (".yaml", ".yml") and not (PRESETS_DIR / f"{stem}.yaml").is_file():
        raise OptionsError(
            describe(
                "no such config file",
                file=path,
                fix="check the path, or name a preset: " + ", ".join(list_presets()),
            )
        )
    return preset_path(str(config))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path`` (safe loading); :class:`OptionsError` naming the file and
    line of a syntax error or a duplicate key, or a file that is missing or not a mapping."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OptionsError(
            describe("no such config file", file=path, fix="check the path")
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionsError(describe(f"cannot read the config: {exc}", file=path)) from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
    except _DuplicateKey as exc:
        raise OptionsError(
            f"{path}:{exc.line}:{exc.column}: duplicate key {exc.key!r} (first on line "
            f"{exc.first_line}): YAML would silently keep only the last one. Fix: merge the two "
            "into one."
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise OptionsError(
            f"{where}: invalid YAML: {problem}. Fix: correct the syntax at that line "
            "(indentation, a missing ':' or an unclosed quote or bracket)."
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OptionsError(
            describe(
                "a config must be a mapping of sections (model:, data:, training:, ...)",
                file=path,
                found=type(data).__name__,
            )
        )
    return _yaml12_floats(data)


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int, column: int, first_line: int) -> None:
        super().__init__(key)
        self.key, self.line, self.column, self.first_line = key, line, column, first_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key written twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            mark = key_node.start_mark
            if isinstance(key, typing.Hashable) and key in seen:
                raise _DuplicateKey(key, mark.line + 1, mark.column + 1, seen[key])
            if isinstance(key, typing.Hashable):
                seen[key] = mark.line + 1
        return super().construct_mapping(node, deep=deep)


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in: mappings recursively, anything else replaced."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"training.learning_rate=1e-4"`` -> ``(["training", "learning_rate"], 0.0001)``.

    The value is parsed as YAML (``true``, ``null``, ``[detect, count]``, ``{detect: 1}``); a
    value YAML cannot read stays a string.
    """
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise OptionsError(
            describe(
                "an override must look like SECTION.OPTION=VALUE",
                found=repr(item),
                fix="write e.g. --set training.learning_rate=1e-4",
            )
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return [p.strip() for p in parts], _yaml12_floats(value)


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` with each ``KEY=VALUE`` override set (nested keys created as needed)."""
    result = deep_merge({}, data)
    problems = []
    for item in overrides:
        keys, value = parse_override(item)
        node: dict[str, Any] = result
        for i, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                problems.append(
                    f"{item!r}: {'.'.join(keys[: i + 1])} is a value ({child!r}), not a section"
                )
                break
            node = child
        else:
            node[keys[-1]] = value
    if problems:
        raise OptionsError("invalid --set override(s):\n  - " + "\n  - ".join(problems))
    return result


_YAML12_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _yaml12_floats(data: Any) -> Any:
    # PyYAML follows YAML 1.1, which reads 1e-4 (no dot) as a string; YAML 1.2 and everyone
    # writing a learning rate mean a float.
    if isinstance(data, dict):
        return {k: _yaml12_floats(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_yaml12_floats(v) for v in data]
    if isinstance(data, str) and _YAML12_FLOAT.fullmatch(data.strip()):
        return float(data)
    return data


def validate_config(data: Mapping[str, Any], what: str = "config") -> TrainConfig:
    """A :class:`TrainConfig` from a plain mapping, or one :class:`OptionsError` listing every
    problem (path, value, allowed range or choices, closest valid key)."""
    try:
        return TrainConfig.model_validate(dict(data))
    except ValidationError as exc:
        raise OptionsError(format_config_error(exc, what)) from None


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    preset: str | None = None,
) -> TrainConfig:
    """Load, merge and validate a training config.

    The preset (a name under ``presets/`` or a path) is the base, the YAML file at ``path`` is
    deep-merged over it, then each ``--set`` override. Raises :class:`OptionsError` listing every
    problem at once.

    >>> load_config(preset="quick_test").model.checkpoint
    'tiny:smolvlm'
    """
    if path is None and preset is None:
        raise OptionsError(
            describe(
                "no configuration given",
                fix="pass a YAML file or a preset name (" + ", ".join(list_presets()) + ")",
            )
        )
    data: dict[str, Any] = {}
    sources = []
    if preset is not None:
        preset_file = config_source(preset)
        data = read_yaml(preset_file)
        sources.append(str(preset_file))
    if path is not None:
        data = deep_merge(data, read_yaml(path))
        sources.append(str(path))
    data = apply_overrides(data, overrides)
    what = " + ".join(sources) + (f" + {len(overrides)} override(s)" if overrides else "")
    return validate_config(data, what)


def dump_config(config: TrainConfig) -> str:
    """The config as YAML text, every option written out (what :func:`load_config` reads back)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def save_resolved_config(config: TrainConfig, run_dir: str | Path) -> Path:
    """Write the resolved config to ``run_dir/config.yaml`` (atomically); return its path.

    Reloading it with :func:`load_config` gives an equal :class:`TrainConfig`.
    """
    from importlib.metadata import version

    header = (
        f"# Resolved training config, written by sam2-finetune {version('sam2-finetune')}.\n"
        "# Every option is spelled out; reload with sam2_finetune.train.config.load_config(path).\n"
    )
    path = Path(run_dir) / RESOLVED_CONFIG_NAME
    return atomic_write_text(path, header + dump_config(config), overwrite=True)
