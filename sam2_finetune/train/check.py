"""``sam2-finetune check``: does this machine suit a training config, and is the config sensible?

:func:`gather_hardware_facts` asks torch and bitsandbytes what the machine has (CUDA, GPUs, their
memory and bf16 support, and, when the config asks for bitsandbytes, a real 4-bit layer
quantised and run forward and backward: :func:`~sam2_finetune.models.quantization.probe_4bit`).
:func:`check_config` is a pure function of a :class:`~sam2_finetune.train.config.TrainConfig` and
those :class:`HardwareFacts`: it estimates the memory the run needs
(:func:`~sam2_finetune.models.memory.estimate_memory`) and returns findings, each an ``error`` (the
run cannot work as configured), a ``warning`` (it works but is slow, wasteful or unusual) or
``info``. The command exits 1 when there is an error, else 0.

Tests pass hand-written :class:`HardwareFacts` (an H100, an 8 GB card, a CPU-only box) to
:func:`check_config`; that is the function's input, not a mock.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Literal

from pydantic import Field

from sam2_finetune.models.memory import MemoryEstimate, Precision, estimate_memory
from sam2_finetune.models.quantization import (
    CPU_PACKED_IN_MULTIPLE,
    CPU_PACKED_OUT_MULTIPLE,
    describe_layers,
    lm_linear_shapes,
    probe_4bit,
    unfit_for_cpu_packing,
)
from sam2_finetune.models.registry import (
    CHECKPOINT_FAMILY,
    FAMILIES,
    Checkpoint,
    ModelFamily,
    get_checkpoint,
    image_tokens,
)
from sam2_finetune.models.table import (
    DEFAULT_FRAME_SIZE,
    DEFAULT_TEXT_TOKENS,
    ExampleSizeOptions,
)
from sam2_finetune.models.tiny import TINY_PREFIX, TINY_TEXT_CONFIG
from sam2_finetune.train.config import ConfigArguments, TrainConfig

# LoRA learning rates in published recipes sit between these (QLoRA: 1e-4 / 2e-4; LLaVA LoRA:
# 2e-4; Qwen-VL fine-tuning scripts: 1e-5..2e-4); full fine-tuning is 1e-6..5e-5.
LORA_LR_RANGE = (1e-5, 1e-3)
FULL_LR_RANGE = (1e-7, 1e-4)
# Warn above this share of the device memory: estimates are unverified and other processes
# (a desktop, a notebook) hold memory too.
MEMORY_WARN_SHARE = 0.85
# transformers optimizers that run on bitsandbytes.
BITSANDBYTES_OPTIMIZERS = ("adamw_bnb_8bit", "paged_adamw_8bit", "paged_adamw_32bit")


@dataclass(frozen=True)
class GpuFacts:
    """One CUDA device as torch reports it."""

    name: str
    total_memory_bytes: int
    compute_capability: tuple[int, int]
    bf16_supported: bool


@dataclass(frozen=True)
class HardwareFacts:
    """What the machine offers. ``bitsandbytes_error`` is None when a real 4-bit layer ran
    (:func:`~sam2_finetune.models.quantization.probe_4bit`), ``"not checked"`` when the probe did
    not run; ``cpu_packs_4bit`` is whether bitsandbytes repacked that layer's weight for its
    AVX512-BF16 CPU kernel, which then needs every 4-bit layer's in-features divisible by 64 and
    out-features by 32."""

    cuda_available: bool
    gpus: tuple[GpuFacts, ...] = ()
    cpu_count: int = 1
    ram_bytes: int | None = None
    bitsandbytes_error: str | None = "not checked"
    cpu_packs_4bit: bool = False
    versions: dict[str, str] = field(default_factory=dict)


Level = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class CheckFinding:
    """One line of the ``check`` report (validate's findings are
    :class:`sam2_finetune.validate.Finding`)."""

    level: Level
    message: str


@dataclass(frozen=True)
class CheckReport:
    """Findings plus what they were based on: the device and precision the run would use, the
    tokens per example, and the memory estimate (None for tiny models)."""

    device: str
    precision: Precision
    image_tokens: int | None
    tokens_per_example: int | None
    estimate: MemoryEstimate | None
    findings: tuple[CheckFinding, ...]

    @property
    def ok(self) -> bool:
        """No blocking problem."""
        return not any(f.level == "error" for f in self.findings)


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def needs_bitsandbytes(config: TrainConfig) -> bool:
    """Whether ``config`` asks for bitsandbytes (8/4-bit weights or an 8-bit optimizer)."""
    return (
        config.model.quantization != "none" or config.training.optimizer in BITSANDBYTES_OPTIMIZERS
    )


def gather_hardware_facts(*, probe_bitsandbytes: bool = True) -> HardwareFacts:
    """Ask torch what this machine has, and (``probe_bitsandbytes``) run a real 4-bit layer
    through bitsandbytes on the device a run would use. Imports torch; bitsandbytes only when
    probing, so a run without quantisation never loads it."""
    import torch

    gpus = []
    cuda = torch.cuda.is_available()
    if cuda:
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            with torch.cuda.device(index):
                bf16 = torch.cuda.is_bf16_supported()
            gpus.append(
                GpuFacts(
                    name=props.name,
                    total_memory_bytes=int(props.total_memory),
                    compute_capability=(props.major, props.minor),
                    bf16_supported=bool(bf16),
                )
            )
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = None
    versions = {
        name: v
        for name in ("torch", "transformers", "peft", "bitsandbytes", "accelerate")
        if (v := _package_version(name)) is not None
    }
    probe = probe_4bit("cuda" if cuda else "cpu") if probe_bitsandbytes else None
    return HardwareFacts(
        cuda_available=cuda,
        gpus=tuple(gpus),
        cpu_count=os.cpu_count() or 1,
        ram_bytes=ram,
        bitsandbytes_error=probe.error if probe else "not checked",
        cpu_packs_4bit=probe.packed if probe else False,
        versions=versions,
    )


def resolve_device(config: TrainConfig, facts: HardwareFacts) -> str:
    """``cuda`` or ``cpu``: what ``hardware.device`` means on this machine."""
    if config.hardware.device == "auto":
        return "cuda" if facts.cuda_available else "cpu"
    return config.hardware.device


def resolve_precision(config: TrainConfig, facts: HardwareFacts) -> Precision:
    """What ``training.precision: auto`` means here: bf16 on a bf16 GPU, fp16 on an older GPU,
    fp32 on the CPU (where fp16 does nothing and bf16 autocast is slow on most CPUs)."""
    if config.training.precision != "auto":
        return config.training.precision
    if resolve_device(config, facts) == "cuda":
        # No visible GPU (a CUDA config checked on another machine): assume a bf16 GPU.
        return "bf16" if all(g.bf16_supported for g in facts.gpus) else "fp16"
    return "fp32"


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("+")[0].split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_config(
    config: TrainConfig,
    facts: HardwareFacts,
    *,
    frame_size: tuple[int, int] = DEFAULT_FRAME_SIZE,
    text_tokens: int = DEFAULT_TEXT_TOKENS,
) -> CheckReport:
    """Findings about running ``config`` on a machine described by ``facts``.

    Memory is estimated for one ``frame_size`` frame plus ``text_tokens`` of prompt and answer
    per example, at the config's batch size; the estimate must fit the smallest GPU used.
    """
    family = FAMILIES[config.model.family]
    checkpoint = config.model.checkpoint or family.default_checkpoint.name
    device = resolve_device(config, facts)
    precision = resolve_precision(config, facts)
    used_gpus = facts.gpus[: config.hardware.num_processes] if device == "cuda" else ()
    findings = [
        *device_findings(config, facts, device, used_gpus, checkpoint),
        *precision_findings(precision, device, used_gpus),
        *quantization_findings(config, facts, device, checkpoint),
        *learning_rate_findings(config),
        *library_findings(config, facts, family, device),
        *data_findings(config, family),
    ]
    n_image_tokens = tokens = estimate = None
    if checkpoint.startswith(TINY_PREFIX):
        findings.append(
            CheckFinding(
                "info",
                f"{checkpoint} is a tiny random model (a few MB at most): memory is "
                "negligible and no estimate is made",
            )
        )
    else:
        reference = reference_checkpoint(checkpoint, family)
        if checkpoint not in CHECKPOINT_FAMILY:
            findings.append(
                CheckFinding(
                    "warning",
                    f"{checkpoint} is not in the registry: memory is estimated with "
                    f"{reference.name}'s architecture",
                )
            )
        width, height = frame_size
        n_image_tokens = image_tokens(
            reference.image,
            width,
            height,
            min_pixels=config.data.min_pixels,
            max_pixels=config.data.max_pixels,
            longest_edge=config.data.longest_edge,
            max_slices=config.data.max_slices,
        )
        tokens = min(n_image_tokens + text_tokens, config.data.max_length)
        findings += token_findings(config, reference, frame_size, n_image_tokens, text_tokens)
        estimate = estimate_run(config, reference, precision, n_image_tokens, tokens)
        findings += memory_findings(estimate, device, used_gpus, facts, config)

    order = {"error": 0, "warning": 1, "info": 2}
    return CheckReport(
        device=device,
        precision=precision,
        image_tokens=n_image_tokens,
        tokens_per_example=tokens,
        estimate=estimate,
        findings=tuple(sorted(findings, key=lambda f: order[f.level])),
    )


def device_findings(
    config: TrainConfig,
    facts: HardwareFacts,
    device: str,
    used_gpus: Sequence[GpuFacts],
    checkpoint: str,
) -> list[CheckFinding]:
    """CUDA asked for but absent, more processes than GPUs or cores, the GPUs used, big models
    on the CPU."""
    findings: list[CheckFinding] = []
    processes = config.hardware.num_processes
    if config.hardware.device == "cuda" and not facts.cuda_available:
        findings.append(
            CheckFinding(
                "error",
                "hardware.device is cuda but CUDA is not available (no GPU, or a CPU-only "
                "torch build); set hardware.device=cpu or auto, or install a CUDA build of torch",
            )
        )
    if device == "cuda" and facts.cuda_available:
        if processes > len(facts.gpus):
            findings.append(
                CheckFinding(
                    "error",
                    f"hardware.num_processes is {processes} but only "
                    f"{len(facts.gpus)} GPU(s) are visible; one process per GPU",
                )
            )
        for gpu in used_gpus:
            findings.append(
                CheckFinding(
                    "info",
                    f"GPU: {gpu.name}, {_gib(gpu.total_memory_bytes)}, compute capability "
                    f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}, bf16 "
                    f"{'yes' if gpu.bf16_supported else 'no'}",
                )
            )
    elif device == "cpu":
        findings.append(
            CheckFinding(
                "info",
                f"CPU: {facts.cpu_count} cores"
                + (f", {_gib(facts.ram_bytes)} RAM" if facts.ram_bytes else "")
                + "; no CUDA GPU used",
            )
        )
        if processes > facts.cpu_count:
            findings.append(
                CheckFinding(
                    "warning",
                    f"{processes} processes on {facts.cpu_count} CPU "
                    "cores: they will compete for cores; use at most one per core",
                )
            )
        if not checkpoint.startswith(TINY_PREFIX):
            findings.append(
                CheckFinding(
                    "warning",
                    f"training {checkpoint} ({_billions(checkpoint)}) on the CPU: expect "
                    "minutes to hours per step; use a GPU, or a tiny:<family> model to test the "
                    "pipeline",
                )
            )
    return findings


def precision_findings(
    precision: Precision, device: str, used_gpus: Sequence[GpuFacts]
) -> list[CheckFinding]:
    """Precisions the device lacks, or that work but cost speed, memory or stability."""
    findings: list[CheckFinding] = []
    if precision == "bf16" and device == "cuda":
        lacking = [g.name for g in used_gpus if not g.bf16_supported]
        if lacking:
            findings.append(
                CheckFinding(
                    "error",
                    f"training.precision is bf16 but {', '.join(lacking)} has no bf16 "
                    "support (it needs compute capability >= 8.0); use fp16 or auto",
                )
            )
    if (
        precision == "fp16"
        and device == "cuda"
        and used_gpus
        and all(g.bf16_supported for g in used_gpus)
    ):
        findings.append(
            CheckFinding(
                "warning",
                "fp16 on a GPU that supports bf16: bf16 has the range of fp32 and needs no "
                "loss scaling (fp16 can overflow); set training.precision=bf16 or auto",
            )
        )
    if precision == "fp16" and device == "cpu":
        findings.append(
            CheckFinding(
                "warning",
                "fp16 does nothing on the CPU (transformers accepts it and trains in "
                "fp32); set training.precision=fp32 or auto",
            )
        )
    if precision == "bf16" and device == "cpu":
        findings.append(
            CheckFinding(
                "warning",
                "bf16 autocast on the CPU is slow unless the CPU has AMX/AVX512-BF16; "
                "fp32 is the usual CPU choice",
            )
        )
    if precision == "fp32" and device == "cuda":
        findings.append(
            CheckFinding(
                "warning",
                "fp32 on a GPU doubles activation memory and is several times slower "
                "than bf16/fp16 with tensor cores; set training.precision=auto",
            )
        )
    return findings


def quantization_findings(
    config: TrainConfig, facts: HardwareFacts, device: str, checkpoint: str
) -> list[CheckFinding]:
    """bitsandbytes unusable for 8/4-bit weights or an 8-bit optimizer; 4-bit layers this CPU's
    packed kernel refuses; quantisation on the CPU at all."""
    findings: list[CheckFinding] = []
    model, optimizer = config.model, config.training.optimizer
    if model.quantization != "none":
        if facts.bitsandbytes_error is not None:
            findings.append(
                CheckFinding(
                    "error",
                    f"model.quantization is {model.quantization} but bitsandbytes is not "
                    f"usable here ({facts.bitsandbytes_error}); install bitsandbytes >= 0.45 or "
                    "set model.quantization=none",
                )
            )
        elif model.quantization == "4bit":
            findings.append(
                CheckFinding(
                    "info",
                    "bitsandbytes ran a real 4-bit NF4 layer here (training and inference "
                    "forward"
                    + (", AVX512-BF16 packed CPU kernel)" if facts.cpu_packs_4bit else ")"),
                )
            )
        if model.quantization == "4bit" and device == "cpu" and facts.cpu_packs_4bit:
            findings += _cpu_packing_findings(checkpoint, FAMILIES[model.family])
        if device == "cpu":
            findings.append(
                CheckFinding(
                    "warning",
                    f"{model.quantization} quantisation on the CPU works (bitsandbytes "
                    ">= 0.45) but is slow: it dequantises every matrix at every step; on the CPU "
                    "use model.quantization=none with a small model",
                )
            )
    if optimizer in BITSANDBYTES_OPTIMIZERS and facts.bitsandbytes_error is not None:
        findings.append(
            CheckFinding(
                "error",
                f"training.optimizer {optimizer} needs bitsandbytes, which is not "
                f"usable here ({facts.bitsandbytes_error}); use adamw_torch",
            )
        )
    return findings


def _cpu_packing_findings(checkpoint: str, family: ModelFamily) -> list[CheckFinding]:
    if checkpoint.startswith(TINY_PREFIX):
        text = TINY_TEXT_CONFIG
        shapes = lm_linear_shapes(
            text["hidden_size"],
            text["intermediate_size"],
            text["num_attention_heads"],
            text["num_key_value_heads"],
            text["head_dim"],
        )
    elif checkpoint in CHECKPOINT_FAMILY:
        arch = get_checkpoint(checkpoint).architecture
        shapes = lm_linear_shapes(
            arch.hidden_size,
            arch.intermediate_size,
            arch.num_attention_heads,
            arch.num_kv_heads,
            arch.head_dim,
        )
    else:
        return []  # shapes unknown here; the loader checks the real layers
    unfit = unfit_for_cpu_packing(shapes)
    if not unfit:
        return []
    return [
        CheckFinding(
            "error",
            f"{checkpoint}'s 4-bit layers {describe_layers(unfit)} cannot run on this CPU: "
            "with AVX512-BF16, bitsandbytes repacks 4-bit weights for its CPU kernel, which "
            f"needs input sizes divisible by {CPU_PACKED_IN_MULTIPLE} and output sizes by "
            f"{CPU_PACKED_OUT_MULTIPLE}; set model.quantization=none on the CPU, or use a GPU",
        )
    ]


def learning_rate_findings(config: TrainConfig) -> list[CheckFinding]:
    """A learning rate far from published recipes; a LoRA scale far from 1-2."""
    findings: list[CheckFinding] = []
    model, rate = config.model, config.training.learning_rate
    low, high = LORA_LR_RANGE if model.method == "lora" else FULL_LR_RANGE
    # The ranges are those of pretrained checkpoints; a tiny random model has nothing to forget.
    tiny = str(model.checkpoint).startswith(TINY_PREFIX)
    if not tiny and not low <= rate <= high:
        findings.append(
            CheckFinding(
                "warning",
                f"training.learning_rate {rate:g} is far outside the "
                f"usual range for {model.method} fine-tuning ({low:g}..{high:g}); "
                + (
                    "too high diverges or forgets"
                    if rate > high
                    else "too low barely moves the weights"
                ),
            )
        )
    if model.method == "lora":
        scale = model.lora_alpha / model.lora_rank
        if not 0.25 <= scale <= 4:
            findings.append(
                CheckFinding(
                    "warning",
                    f"LoRA scale alpha/rank = {scale:g}: updates are multiplied by it; "
                    "recipes use 1-2 (alpha = rank or 2 x rank)",
                )
            )
    return findings


def library_findings(
    config: TrainConfig, facts: HardwareFacts, family: ModelFamily, device: str
) -> list[CheckFinding]:
    """transformers too old for the family, remote code, flash-attn and loggers not installed."""
    findings: list[CheckFinding] = []
    installed = facts.versions.get("transformers")
    if installed and _version_tuple(installed) < _version_tuple(family.min_transformers):
        findings.append(
            CheckFinding(
                "error",
                f"family {family.name} needs transformers >= {family.min_transformers}, "
                f"installed {installed}",
            )
        )
    if family.trust_remote_code:
        findings.append(
            CheckFinding(
                "warning",
                f"family {family.name} runs the checkpoint's own code (trust_remote_code), "
                f"written for transformers 4.x; with transformers {installed or '?'} it may fail "
                "to load. " + family.notes,
            )
        )
    if config.model.attn_implementation == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            findings.append(
                CheckFinding(
                    "error",
                    "model.attn_implementation is flash_attention_2 but the flash-attn "
                    "package is not installed; use sdpa",
                )
            )
        elif device == "cpu":
            findings.append(
                CheckFinding("error", "flash_attention_2 runs only on CUDA GPUs; use sdpa")
            )
    for logger in config.output.loggers:
        if importlib.util.find_spec(logger) is None:
            findings.append(
                CheckFinding(
                    "error",
                    f"output.loggers lists {logger} but the {logger} package is not "
                    "installed; install it or remove it from the list",
                )
            )
    return findings


def data_findings(config: TrainConfig, family: ModelFamily) -> list[CheckFinding]:
    """An answer format other than the family's own; a dataset path that does not exist."""
    findings: list[CheckFinding] = []
    data = config.data
    if data.answer_format != family.answer_format:
        findings.append(
            CheckFinding(
                "warning",
                f"data.answer_format is {data.answer_format}, but {family.name} was "
                f"pretrained on {family.answer_format}; fine-tuning in the family's own syntax "
                "usually converges faster",
            )
        )
    if not Path(data.dataset).exists():
        findings.append(
            CheckFinding(
                "warning",
                f"data.dataset {data.dataset} does not exist yet (run convert / split "
                "first, or fix the path)",
            )
        )
    return findings


def reference_checkpoint(checkpoint: str, family: ModelFamily) -> Checkpoint:
    """The registry row whose numbers stand for ``checkpoint``: its own, else the family's
    default."""
    if checkpoint in CHECKPOINT_FAMILY:
        return get_checkpoint(checkpoint)
    return family.default_checkpoint


def token_findings(
    config: TrainConfig,
    reference: Checkpoint,
    frame_size: tuple[int, int],
    n_image_tokens: int,
    text_tokens: int,
) -> list[CheckFinding]:
    """``data.max_length`` too short for the image tokens, or for image plus text."""
    width, height = frame_size
    max_length = config.data.max_length
    if max_length < n_image_tokens + 16:
        return [
            CheckFinding(
                "error",
                f"data.max_length {max_length} leaves no room for the answer: a "
                f"{width}x{height} frame alone is {n_image_tokens} image tokens for "
                f"{reference.name}; raise data.max_length or bound the image size",
            )
        ]
    if max_length < n_image_tokens + text_tokens:
        return [
            CheckFinding(
                "warning",
                f"data.max_length {max_length} may truncate answers: a "
                f"{width}x{height} frame is {n_image_tokens} image tokens, plus ~{text_tokens} "
                "text tokens",
            )
        ]
    return []


def estimate_run(
    config: TrainConfig,
    reference: Checkpoint,
    precision: Precision,
    n_image_tokens: int,
    tokens: int,
) -> MemoryEstimate:
    """The memory estimate of ``config`` with ``reference``'s architecture, ``tokens`` per
    example of which ``n_image_tokens`` (capped at ``tokens``) are image tokens."""
    model, training = config.model, config.training
    image = min(n_image_tokens, tokens)
    return estimate_memory(
        reference.architecture,
        quantization=model.quantization,
        lora_rank=model.lora_rank,
        batch_size=training.batch_size,
        seq_len=tokens - image,
        image_tokens=image,
        gradient_checkpointing=training.gradient_checkpointing,
        optimizer=training.optimizer,
        precision=precision,
        method=model.method,
        lora_dropout=model.lora_dropout,
        freeze_vision_tower=model.freeze_vision_tower,
        freeze_projector=model.freeze_projector,
        attn_implementation=model.attn_implementation,
    )


def _billions(checkpoint: str) -> str:
    if checkpoint in CHECKPOINT_FAMILY:
        return f"{get_checkpoint(checkpoint).billions:.1f}B parameters"
    return "size unknown"


def memory_findings(
    estimate: MemoryEstimate,
    device: str,
    used_gpus: Sequence[GpuFacts],
    facts: HardwareFacts,
    config: TrainConfig,
) -> list[CheckFinding]:
    """The estimate against the smallest GPU used, or the RAM on the CPU."""
    need = estimate.total
    summary = f"estimated peak memory per process {estimate.describe()} (UNVERIFIED estimate)"
    if device == "cuda" and used_gpus:
        have = min(g.total_memory_bytes for g in used_gpus)
        if need > have:
            return [
                CheckFinding(
                    "error", f"{summary} exceeds the GPU's {_gib(have)}. " + _memory_advice(config)
                )
            ]
        if need > MEMORY_WARN_SHARE * have:
            return [
                CheckFinding(
                    "warning",
                    f"{summary} is over {MEMORY_WARN_SHARE:.0%} of the GPU's "
                    f"{_gib(have)}: little headroom. " + _memory_advice(config),
                )
            ]
        return [CheckFinding("info", f"{summary} fits the GPU's {_gib(have)}")]
    if device == "cpu" and facts.ram_bytes:
        if need > facts.ram_bytes:
            return [
                CheckFinding(
                    "error",
                    f"{summary} exceeds the machine's {_gib(facts.ram_bytes)} of RAM. "
                    + _memory_advice(config),
                )
            ]
        if need > MEMORY_WARN_SHARE * facts.ram_bytes:
            return [
                CheckFinding(
                    "warning", f"{summary} is over {MEMORY_WARN_SHARE:.0%} of the machine's RAM"
                )
            ]
        return [CheckFinding("info", f"{summary} fits in RAM ({_gib(facts.ram_bytes)})")]
    return [CheckFinding("info", summary)]


def _memory_advice(config: TrainConfig) -> str:
    tips = []
    model, data, training = config.model, config.data, config.training
    if not training.gradient_checkpointing:
        tips.append("training.gradient_checkpointing=true")
    if model.quantization != "4bit" and model.method == "lora":
        tips.append("model.quantization=4bit")
    if training.batch_size > 1:
        tips.append("a smaller training.batch_size with more gradient_accumulation_steps")
    resolution = FAMILIES[model.family].resolution
    if resolution == "pixels":
        lower = (data.max_pixels or 1_003_520) // 2
        tips.append(f"a lower data.max_pixels (e.g. {lower}, about {lower // 784} image tokens)")
    elif resolution == "longest_edge":
        tips.append("a lower data.longest_edge (fewer tiles)")
    elif resolution == "slices":
        tips.append("a lower data.max_slices")
    tips.append("a smaller checkpoint of the family (`sam2-finetune models`)")
    return "Try: " + "; ".join(tips) + "."


def format_report(report: CheckReport) -> str:
    """The report as text: one line per finding, errors first, then a verdict."""
    marks = {"error": "ERROR  ", "warning": "WARNING", "info": "ok     "}
    lines = [
        f"device {report.device}, precision {report.precision}"
        + (
            f", {report.tokens_per_example} tokens per example ({report.image_tokens} image)"
            if report.tokens_per_example
            else ""
        )
    ]
    lines += [f"{marks[f.level]} {f.message}" for f in report.findings]
    errors = sum(f.level == "error" for f in report.findings)
    warnings = sum(f.level == "warning" for f in report.findings)
    lines.append(f"{'FAIL' if errors else 'PASS'}: {errors} error(s), {warnings} warning(s)")
    return "\n".join(lines)


class CheckOptions(ConfigArguments, ExampleSizeOptions):
    """Check this machine against a training config: CUDA, GPU memory against the estimate, bf16,
    bitsandbytes, library versions, and settings that work but hurt. Exits 1 on a blocking
    problem."""

    json_output: bool = Field(False, alias="json", description="Print JSON instead of text.")


def check_command(options: CheckOptions) -> int:
    """``sam2-finetune check CONFIG``: print the report; 1 if a blocking problem was found."""
    config = options.load()
    facts = gather_hardware_facts(probe_bitsandbytes=needs_bitsandbytes(config))
    report = check_config(
        config,
        facts,
        frame_size=(options.frame_size[0], options.frame_size[1]),
        text_tokens=options.text_tokens,
    )
    if options.json_output:
        payload = {
            "ok": report.ok,
            "device": report.device,
            "precision": report.precision,
            "image_tokens": report.image_tokens,
            "tokens_per_example": report.tokens_per_example,
            "estimate": report.estimate.as_dict() if report.estimate else None,
            "findings": [asdict(f) for f in report.findings],
            "hardware": asdict(facts),
        }
        print(json.dumps(payload, indent=2))
    else:
        print(format_report(report))
    return 0 if report.ok else 1
