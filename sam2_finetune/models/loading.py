"""Load a processor and a model of a supported family, from a tiny folder or a real checkpoint.

One path for both: ``load_processor(path, family)`` and ``load_model(path, family, ...)`` take a
local folder, a Hub id (downloads happen only there, for users with network) or ``"tiny:<family>"``
(built once into a cache, see :func:`sam2_finetune.models.tiny.resolve_checkpoint`). The training,
evaluation and export stages call these two functions and nothing else to get a model.

Why not ``AutoProcessor.from_pretrained``: it picks the class named in the folder's JSON. For
Qwen2-VL, Qwen2.5-VL and SmolVLM that class also builds a *video* processor, which needs
torchvision; torchvision does not import next to our torch. The registry
(:data:`~sam2_finetune.models.registry.FAMILIES`) therefore names the processor class per family,
and for those three it is a subclass in :mod:`sam2_finetune.models.processors` that takes no video
processor. The image processors are the PIL backends (``*ImageProcessorPil``), which
``AutoImageProcessor`` picks by itself when torchvision is absent; we ask for them explicitly so a
machine that *does* have torchvision gets the same pixels as CI.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import transformers
from transformers import AutoTokenizer

from sam2_finetune.errors import ModelError, describe
from sam2_finetune.files import read_json
from sam2_finetune.models.processors import (  # the classes re-exported where they used to live
    LOCAL_PROCESSORS,
    Qwen2_5_VLProcessorWithoutVideo,
    Qwen2VLProcessorWithoutVideo,
    SmolVLMProcessorWithoutVideo,
)
from sam2_finetune.models.quantization import (
    CPU_PACKED_IN_MULTIPLE,
    CPU_PACKED_OUT_MULTIPLE,
    Quantization,
    cpu_packs_4bit,
    describe_layers,
    import_bitsandbytes,
    unfit_for_cpu_packing,
)
from sam2_finetune.models.registry import ModelFamily, get_family
from sam2_finetune.models.tiny import resolve_checkpoint

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

__all__ = [
    "Qwen2VLProcessorWithoutVideo",
    "Qwen2_5_VLProcessorWithoutVideo",
    "SmolVLMProcessorWithoutVideo",
    "check_cpu_4bit_shapes",
    "load_model",
    "load_processor",
    "quantization_config",
]


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Around peft's wrapping and loading: peft reads transformers' deprecated
    ``is_gradient_checkpointing`` property, whose FutureWarning (transformers 5) would be printed
    on every run and says nothing a user can act on. Other warnings pass."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
        )
        yield


def _check_remote_code(family: str, row: ModelFamily, trust_remote_code: bool) -> None:
    if row.trust_remote_code and not trust_remote_code:
        raise ModelError(
            describe(
                f"family {family!r} has no modelling code in transformers: its checkpoints carry "
                "their own Python code, which runs only with trust_remote_code",
                field="trust_remote_code",
                expected=True,
                found=False,
                fix="read the checkpoint's code, then pass trust_remote_code=True; or pick a "
                "family native to transformers",
            )
        )


def _check_family(source: str, family: str, row: ModelFamily) -> None:
    config_file = Path(source) / "config.json"
    if not config_file.is_file():
        return  # a Hub id, or a processor-only folder: nothing to compare here
    found = read_json(config_file, "checkpoint config").get("model_type")
    if found != row.model_type:
        raise ModelError(
            describe(
                f"the checkpoint is not a {family} model",
                file=config_file,
                field="model_type",
                expected=repr(row.model_type),
                found=repr(found),
                fix="set the family that matches the checkpoint, or point to a checkpoint of "
                f"the {family} family",
            )
        )


def load_processor(path: str | Path, family: str, *, trust_remote_code: bool = False) -> Any:
    """The processor of ``family`` saved at ``path`` (folder, Hub id, or ``"tiny:<family>"``).

    Works the same for a tiny folder and a real checkpoint: the processor class comes from the
    family's registry row, not from the JSON in the folder, and its image processor is the PIL
    backend. Raises :class:`ModelError` when the folder lacks a tokenizer or an image processor.

    >>> processor = load_processor("tiny:smolvlm", "smolvlm")  # doctest: +SKIP
    """
    row = get_family(family)
    _check_remote_code(family, row, trust_remote_code)
    source = resolve_checkpoint(str(path))
    _check_family(source, family, row)
    try:
        if row.trust_remote_code:
            loader = getattr(transformers, row.processor_class)
            return loader.from_pretrained(source, trust_remote_code=True)
        processor_class = LOCAL_PROCESSORS.get(row.processor_class) or getattr(
            transformers, row.processor_class
        )
        # Building the sub-processors ourselves keeps from_pretrained from picking its own
        # classes (the torchvision backend, a video processor); the processor's settings
        # (image_seq_len, patch_size, chat template...) still come from the folder.
        parts = {
            "image_processor": getattr(transformers, row.image_processor_class).from_pretrained(
                source
            ),
            "tokenizer": AutoTokenizer.from_pretrained(source),
        }
        processor_dict, _ = processor_class.get_processor_dict(source)
        args = [parts[name] for name in processor_class.get_attributes()]
        return processor_class.from_args_and_dict(args, processor_dict)
    except (OSError, ValueError) as exc:
        raise ModelError(
            describe(
                f"cannot load the {family} processor: {exc}",
                file=str(path),
                fix="point to a folder saved with save_pretrained (tokenizer + image processor "
                "files), a Hub id, or 'tiny:<family>'",
            )
        ) from exc


def quantization_config(family: str, quantization: Quantization, compute_dtype: Any = None) -> Any:
    """The ``BitsAndBytesConfig`` for ``quantization`` (``None`` for ``"none"``).

    4-bit is NF4 with double quantization (QLoRA's recipe); the family's vision tower, projector
    and output head are left unquantized. bitsandbytes >= 0.45 runs both modes on the CPU too.
    """
    if quantization == "none":
        return None
    import torch
    from transformers import BitsAndBytesConfig

    skip = list(get_family(family).skip_modules)
    import_bitsandbytes()  # quietly, before transformers imports it
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=compute_dtype or torch.float32,
            llm_int8_skip_modules=skip,
        )
    raise ModelError(
        describe(
            "unknown quantization",
            field="quantization",
            expected="none | 8bit | 4bit",
            found=repr(quantization),
        )
    )


def load_model(
    path: str | Path,
    family: str,
    *,
    quantization: Quantization = "none",
    dtype: torch.dtype | str | None = None,
    device_map: str | dict[str, Any] | None = None,
    trust_remote_code: bool = False,
) -> PreTrainedModel:
    """The model of ``family`` saved at ``path`` (folder, Hub id, or ``"tiny:<family>"``).

    ``quantization`` loads the language model in 8-bit or 4-bit NF4 (double quant) through
    bitsandbytes, keeping the family's ``skip_modules`` (registry) in full precision; a 4-bit
    model whose layers this CPU's bitsandbytes kernel cannot run is refused with one
    :class:`ModelError` (:func:`check_cpu_4bit_shapes`).
    ``dtype`` is the weights' dtype (and the 4-bit compute dtype); ``None`` keeps the saved one.

    >>> model = load_model("tiny:qwen2_vl", "qwen2_vl", quantization="4bit")  # doctest: +SKIP
    """
    row = get_family(family)
    _check_remote_code(family, row, trust_remote_code)
    source = resolve_checkpoint(str(path))
    _check_family(source, family, row)
    model_class = getattr(transformers, row.model_class)
    if isinstance(dtype, str) and dtype != "auto":
        import torch

        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ModelError(
                describe(
                    "unknown dtype",
                    field="dtype",
                    expected="a torch dtype name such as bfloat16, float16, float32, or auto",
                    found=repr(dtype),
                )
            )
        dtype = getattr(torch, dtype)
    kwargs: dict[str, Any] = {}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if device_map is not None:
        kwargs["device_map"] = device_map
    config = quantization_config(family, quantization, None if dtype == "auto" else dtype)
    if config is not None:
        kwargs["quantization_config"] = config
    if row.trust_remote_code:
        kwargs["trust_remote_code"] = True
    try:
        model = model_class.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(
            describe(
                f"cannot load the {family} model: {exc}",
                file=str(path),
                fix="point to a folder saved with save_pretrained, a Hub id, or 'tiny:<family>', "
                "and check that the family matches the checkpoint",
            )
        ) from exc
    if quantization == "4bit":
        check_cpu_4bit_shapes(model, str(path))
    return model


def check_cpu_4bit_shapes(model: Any, where: str) -> None:
    """Raise one :class:`ModelError` if ``model`` has 4-bit layers on the CPU that bitsandbytes
    cannot repack for its AVX512-BF16 kernel (see :mod:`sam2_finetune.models.quantization`).

    Such a model loads and even trains, then crashes inside bitsandbytes at its first forward
    pass without autograd (evaluation, generation). The layers checked are the ones the loader
    really quantised; nothing is checked on GPUs or on CPUs without AVX512-BF16, where every
    shape works.
    """
    from bitsandbytes.nn import Linear4bit

    layers = [
        (name, module.in_features, module.out_features)
        for name, module in model.named_modules()
        if isinstance(module, Linear4bit) and module.weight.device.type == "cpu"
    ]
    unfit = unfit_for_cpu_packing(layers)
    if not unfit or not cpu_packs_4bit():
        return
    raise ModelError(
        describe(
            f"{len(unfit)} of the model's {len(layers)} 4-bit layers cannot run on this CPU: "
            "its AVX512-BF16 support makes bitsandbytes repack 4-bit weights for its CPU "
            f"kernel, which needs input sizes divisible by {CPU_PACKED_IN_MULTIPLE} and output "
            f"sizes by {CPU_PACKED_OUT_MULTIPLE}; evaluation and generation would crash inside "
            "bitsandbytes",
            file=where,
            field="quantization",
            expected=f"layers of in % {CPU_PACKED_IN_MULTIPLE} == 0 and out % "
            f"{CPU_PACKED_OUT_MULTIPLE} == 0",
            found=describe_layers(unfit),
            fix="load it without quantization on the CPU (model.quantization=none), or on a "
            "GPU; the tiny:<family> models and the real checkpoints fit",
        )
    )
