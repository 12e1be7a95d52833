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

This module is the schema and the validation; reading presets, files and overrides is in
:mod:`sam2_finetune.train.loading`, the error formatting in :mod:`sam2_finetune.errors` (shared
with the CLI). Their public names are re-exported here.

>>> config = load_config(preset="quick_test", overrides=["training.learning_rate=1e-4"])
>>> config.training.learning_rate
0.0001
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from sam2_finetune.errors import (
    OptionsError,
    allowed_values,
    closest_key,
    format_validation_error,
)
from sam2_finetune.models.memory import AttnImplementation, Method, Optimizer, PrecisionChoice
from sam2_finetune.models.quantization import Quantization
from sam2_finetune.models.registry import CHECKPOINT_FAMILY, FAMILIES
from sam2_finetune.models.tiny import TINY_PREFIX, parse_tiny_checkpoint
from sam2_finetune.outputs import atomic_write_text
from sam2_finetune.train.augment import AugmentOptions
from sam2_finetune.train.loading import (
    PRESETS_DIR,
    apply_overrides,
    config_source,
    deep_merge,
    list_presets,
    parse_override,
    preset_path,
    read_config_sources,
    read_yaml,
)

# Loading, presets and the error formatter live in train/loading.py and errors.py; their names
# stay importable from here, where callers have always found them.
__all__ = [
    "CONFIG_FIX",
    "PRESETS_DIR",
    "RESOLVED_CONFIG_NAME",
    "TINY_PREFIX",
    "DataSection",
    "HardwareSection",
    "ModelSection",
    "OutputSection",
    "Override",
    "TrainConfig",
    "TrainingSection",
    "allowed_values",
    "apply_overrides",
    "closest_key",
    "config_source",
    "deep_merge",
    "dump_config",
    "format_config_error",
    "list_presets",
    "load_config",
    "parse_override",
    "preset_path",
    "read_yaml",
    "save_resolved_config",
    "validate_config",
]
from sam2_finetune.tasks import ExampleOptions, Task  # noqa: F401 (Task: the literal tests check)

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
Scheduler = Literal[
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
    "inverse_sqrt", "reduce_lr_on_plateau",
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


# One ``--set`` item. Commands declare ``set: list[Override]`` so a malformed item is reported
# with the other options, before any file is read.
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
            tiny_family, _ = parse_tiny_checkpoint(self.checkpoint)  # tiny:llava-learner
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


class DataSection(ExampleOptions):
    """What to train on and how examples are built from it. The example-building options
    (task_mix, min/max_pixels, negative_rate, max_polygon_points, examples_per_frame) are
    :class:`sam2_finetune.tasks.ExampleOptions`, the ones ``convert`` takes: one declaration,
    so a converted dataset and a training run build examples alike."""

    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    dataset: Path = Field(
        description="Canonical dataset folder (`convert --to hf`, optionally `split` into "
        "train/validation/test), or a folder of SAM2 export ZIPs that train converts first."
    )
    frames: list[str] | None = Field(
        None,
        description="When dataset is SAM2 exports: raw frames per export (a folder or the video), "
        "in export order or as EXPORT_NAME=PATH, as `convert --frames` takes them.",
    )
    allow_overlays: bool = Field(
        False,
        description="Train on overlay images (annotations drawn in: the answer is visible); "
        "refused unless true, and recorded in the run summary.",
    )
    train_split: str = Field("train", min_length=1, description="Split to train on.")
    eval_split: str | None = Field(
        "validation", description="Split to evaluate on; null: no evaluation data."
    )
    answer_format: AnswerFormatName | None = Field(
        None, description="How answers are written; default: the family's pretraining format."
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
    augment: AugmentOptions | None = Field(
        None,
        description="Augmentation of training frames (never of evaluation): hflip, scale_crop, "
        "scale_min/max, brightness, contrast, saturation, hue (see docs/train.md); null: none.",
    )

    @model_validator(mode="after")
    def _data_rules(self) -> DataSection:
        problems = []
        pixels = self.pixel_problem()
        if pixels is not None:
            problems.append(_problem(("min_pixels",), self.min_pixels, pixels))
        if self.task_mix is not None and sum(self.task_mix.values()) <= 0:
            problems.append(
                _problem(("task_mix",), self.task_mix, "at least one task needs a weight > 0")
            )
        _raise_problems("DataSection", problems)
        return self


# Evaluation metrics the grounding-metrics callback adds (train.callbacks): they exist only when
# training.eval_generation_samples > 0.
GENERATED_METRICS = ("map", "map50", "map75", "ar100", "mean_iou", "parse_failure_rate")


MAX_DATALOADER_WORKERS = 64  # the collator keeps a row of counts per worker (train.collator)


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
    dataloader_workers: int = Field(
        0,
        ge=0,
        le=MAX_DATALOADER_WORKERS,
        description="Processes that build batches while the model trains (DataLoader workers); "
        "0: the training process builds them. Same batches either way.",
    )
    logging_steps: int = Field(10, ge=1, le=1_000_000, description="Log every N steps.")
    eval_steps: int | None = Field(
        None, ge=1, le=1_000_000, description="Evaluate every N steps; null: no evaluation."
    )
    eval_generation_samples: int = Field(
        16,
        ge=0,
        le=100_000,
        description="Validation frames answered by generation at each evaluation, scored as "
        "eval_map50, eval_map, eval_mean_iou, eval_parse_failure_rate; 0: off.",
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
                    "e.g. --set training.epochs=null --set training.max_steps=100",
                )
            )
        if self.lr_scheduler == "reduce_lr_on_plateau" and self.eval_steps is None:
            problems.append(
                _problem(
                    ("lr_scheduler",),
                    self.lr_scheduler,
                    "reduce_lr_on_plateau lowers the rate when the evaluation loss stops "
                    "improving: set training.eval_steps",
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
        if self.metric_for_best_model in GENERATED_METRICS and self.eval_generation_samples == 0:
            problems.append(
                _problem(
                    ("metric_for_best_model",),
                    self.metric_for_best_model,
                    "is computed from generated answers: set training.eval_generation_samples "
                    "above 0 (e.g. 16), or pick loss",
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
# Loading: the sources (presets, YAML, --set) are read by train/loading.py, validated here.

CONFIG_FIX = (
    "correct the options above in the YAML file or with --set KEY=VALUE; docs/config.md lists "
    "every option"
)


def format_config_error(
    error: ValidationError, what: str, model: type[BaseModel] | None = None
) -> str:
    """Every problem of a config validation, one per line, options named by YAML key path
    (``training.learning_rate``): see :func:`sam2_finetune.errors.format_validation_error`."""
    return format_validation_error(error, what, model or TrainConfig, fix=CONFIG_FIX)


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
    data, what = read_config_sources(path, overrides, preset)
    return validate_config(data, what)


def dump_config(config: TrainConfig) -> str:
    """The config as YAML text, every option written out (what :func:`load_config` reads back)."""
    import yaml

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


class ConfigArguments(BaseModel):
    """The options of every command that reads a training config (``check``, ``train``): the
    config and its overrides, declared once."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    config: str = Field(
        description="A config YAML file, or a preset name (quick_test, production, "
        "qwen2_5_vl/7b_qlora, ...).",
        json_schema_extra={"positional": True},
    )
    set: list[Override] = Field(
        [],
        description="Overrides KEY=VALUE (values read as YAML), e.g. training.batch_size=2; "
        "before or after CONFIG.",
    )

    def load(self) -> TrainConfig:
        """The validated config: the file or preset, then each override."""
        return load_config(preset=self.config, overrides=self.set)
