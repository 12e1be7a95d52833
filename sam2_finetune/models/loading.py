"""Load a processor and a model of a supported family, from a tiny folder or a real checkpoint.

One path for both: ``load_processor(path, family)`` and ``load_model(path, family, ...)`` take a
local folder, a Hub id (downloads happen only there, for users with network) or ``"tiny:<family>"``
(built once into a cache, see :func:`sam2_finetune.models.tiny.resolve_checkpoint`). The training,
evaluation and export stages call these two functions and nothing else to get a model.

Why not ``AutoProcessor.from_pretrained``: it picks the class named in the folder's JSON. For
Qwen2-VL, Qwen2.5-VL and SmolVLM that class also builds a *video* processor, which needs
torchvision; torchvision does not import next to our torch. :data:`FAMILY_LOADING` therefore names
the processor class per family, and for those three it is a subclass here that takes no video
processor. The image processors are the PIL backends (``*ImageProcessorPil``), which
``AutoImageProcessor`` picks by itself when torchvision is absent; we ask for them explicitly so a
machine that *does* have torchvision gets the same pixels as CI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import transformers
from transformers import (
    AutoProcessor,
    AutoTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLProcessor,
    SmolVLMConfig,
    SmolVLMProcessor,
)
from transformers.processing_utils import ProcessorMixin

from sam2_finetune.errors import ModelError, describe
from sam2_finetune.files import read_json

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

Quantization = Literal["none", "8bit", "4bit"]


@dataclass(frozen=True)
class FamilyLoading:
    """How to load one family, and what its processor expects. A row of :data:`FAMILY_LOADING`.

    ``image_placeholder`` is what the prompt text holds per image (the chat template writes it);
    the processor expands it into ``image_token`` repeated once per visual embedding (plus
    wrapper tokens for some families). A collator masks ``image_token`` out of the labels.
    ``prompt_style`` says how the real checkpoints build prompts: ``"chat_template"`` (messages
    with ``{"type": "image"}`` / ``{"type": "text"}`` parts through ``apply_chat_template``) or
    ``"prefix_suffix"`` (PaliGemma: ``processor(text=prefix, images=..., suffix=answer)``; the
    real checkpoints ship no chat template).
    ``skip_modules`` stay in full precision under 8/4-bit quantization (vision tower, projector,
    output head): quantizing them costs accuracy and saves little memory. Names are full prefixes
    (``model.vision_tower``), as ``llm_int8_skip_modules`` matches a name's prefix or suffix.
    ``model_type`` is what the checkpoint's ``config.json`` says, to catch a family mismatch early.
    ``language_model`` is the module path of the text decoder, where LoRA adapters usually go
    (a peft ``target_modules`` regex such as ``model\\.language_model\\..*\\.(q_proj|v_proj)``).
    """

    model_type: str
    model_class: str
    processor_class: str
    image_processor_class: str | None
    image_placeholder: str
    image_token: str
    skip_modules: tuple[str, ...]
    language_model: str
    prompt_style: Literal["chat_template", "prefix_suffix"] = "chat_template"
    trust_remote_code: bool = False


class Qwen2VLProcessorWithoutVideo(Qwen2VLProcessor):
    """``Qwen2VLProcessor`` without its video processor (which needs torchvision). Images only."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)


class Qwen2_5_VLProcessorWithoutVideo(Qwen2_5_VLProcessor):
    """``Qwen2_5_VLProcessor`` without its video processor (needs torchvision). Images only."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)


class SmolVLMProcessorWithoutVideo(SmolVLMProcessor):
    """``SmolVLMProcessor`` without its video processor (needs torchvision). Images only."""

    def __init__(
        self, image_processor, tokenizer, image_seq_len: int = 169, chat_template=None, **kwargs
    ):
        # SmolVLMProcessor.__init__ takes video_processor positionally; ProcessorMixin then keeps
        # only the sub-processors this signature names, so None is dropped, not stored.
        super().__init__(
            image_processor, tokenizer, None, image_seq_len, chat_template=chat_template, **kwargs
        )

    def apply_chat_template(self, conversation, chat_template=None, **kwargs):
        """The generic template path: SmolVLM's own override reads video-processor settings."""
        return ProcessorMixin.apply_chat_template(self, conversation, chat_template, **kwargs)


# Without registration ``AutoProcessor.from_pretrained`` on a saved tiny folder cannot resolve the
# class name written in processor_config.json and silently returns only the tokenizer.
AutoProcessor.register(Qwen2VLConfig, Qwen2VLProcessorWithoutVideo, exist_ok=True)
AutoProcessor.register(Qwen2_5_VLConfig, Qwen2_5_VLProcessorWithoutVideo, exist_ok=True)
AutoProcessor.register(SmolVLMConfig, SmolVLMProcessorWithoutVideo, exist_ok=True)

_LOCAL_PROCESSORS: dict[str, type[ProcessorMixin]] = {
    cls.__name__: cls
    for cls in (
        Qwen2VLProcessorWithoutVideo,
        Qwen2_5_VLProcessorWithoutVideo,
        SmolVLMProcessorWithoutVideo,
    )
}

_LLAVA_LIKE_SKIP = ("model.vision_tower", "model.multi_modal_projector", "lm_head")
_IDEFICS_LIKE_SKIP = ("model.vision_model", "model.connector", "lm_head")

# family -> how to load it. Class names are transformers' (or this module's, see _LOCAL_PROCESSORS).
FAMILY_LOADING: dict[str, FamilyLoading] = {
    "llava": FamilyLoading(
        model_type="llava",
        model_class="LlavaForConditionalGeneration",
        processor_class="LlavaProcessor",
        image_processor_class="LlavaImageProcessorPil",
        image_placeholder="<image>",
        image_token="<image>",
        skip_modules=_LLAVA_LIKE_SKIP,
        language_model="model.language_model",
    ),
    "qwen2_vl": FamilyLoading(
        model_type="qwen2_vl",
        model_class="Qwen2VLForConditionalGeneration",
        processor_class="Qwen2VLProcessorWithoutVideo",
        image_processor_class="Qwen2VLImageProcessorPil",
        image_placeholder="<|vision_start|><|image_pad|><|vision_end|>",
        image_token="<|image_pad|>",
        # The patch merger (projector) lives inside model.visual.
        skip_modules=("model.visual", "lm_head"),
        language_model="model.language_model",
    ),
    "qwen2_5_vl": FamilyLoading(
        model_type="qwen2_5_vl",
        model_class="Qwen2_5_VLForConditionalGeneration",
        processor_class="Qwen2_5_VLProcessorWithoutVideo",
        image_processor_class="Qwen2VLImageProcessorPil",
        image_placeholder="<|vision_start|><|image_pad|><|vision_end|>",
        image_token="<|image_pad|>",
        skip_modules=("model.visual", "lm_head"),
        language_model="model.language_model",
    ),
    "idefics3": FamilyLoading(
        model_type="idefics3",
        model_class="Idefics3ForConditionalGeneration",
        processor_class="Idefics3Processor",
        image_processor_class="Idefics3ImageProcessorPil",
        image_placeholder="<image>",
        image_token="<image>",
        skip_modules=_IDEFICS_LIKE_SKIP,
        language_model="model.text_model",
    ),
    "smolvlm": FamilyLoading(
        model_type="smolvlm",
        model_class="SmolVLMForConditionalGeneration",
        processor_class="SmolVLMProcessorWithoutVideo",
        image_processor_class="SmolVLMImageProcessorPil",
        image_placeholder="<image>",
        image_token="<image>",
        skip_modules=_IDEFICS_LIKE_SKIP,
        language_model="model.text_model",
    ),
    "paligemma": FamilyLoading(
        model_type="paligemma",
        model_class="PaliGemmaForConditionalGeneration",
        processor_class="PaliGemmaProcessor",
        image_processor_class="SiglipImageProcessorPil",
        image_placeholder="<image>",
        image_token="<image>",
        skip_modules=_LLAVA_LIKE_SKIP,
        language_model="model.language_model",
        prompt_style="prefix_suffix",
    ),
    "gemma3": FamilyLoading(
        model_type="gemma3",
        model_class="Gemma3ForConditionalGeneration",
        processor_class="Gemma3Processor",
        image_processor_class="Gemma3ImageProcessorPil",
        image_placeholder="<start_of_image>",
        image_token="<image_soft_token>",
        skip_modules=_LLAVA_LIKE_SKIP,
        language_model="model.language_model",
    ),
    # Their modelling code lives in the checkpoint repositories, not in transformers; the module
    # names below come from that code (openbmb/MiniCPM-V-2_6, THUDM/cogvlm2-llama3-chat-19B) and
    # cannot be checked offline.
    "minicpm_v": FamilyLoading(
        model_type="minicpmv",
        model_class="AutoModel",
        processor_class="AutoProcessor",
        image_processor_class=None,
        image_placeholder="(<image>./</image>)",
        image_token="<unk>",
        skip_modules=("vpm", "resampler", "llm.lm_head"),
        language_model="llm",
        trust_remote_code=True,
    ),
    "cogvlm": FamilyLoading(
        model_type="cogvlm",
        model_class="AutoModelForCausalLM",
        processor_class="AutoTokenizer",
        image_processor_class=None,
        image_placeholder="",
        image_token="",
        skip_modules=("model.vision", "lm_head"),
        language_model="model.layers",
        trust_remote_code=True,
    ),
}


def family_loading(family: str) -> FamilyLoading:
    """The :data:`FAMILY_LOADING` row of ``family``; a :class:`ModelError` lists the known ones."""
    try:
        return FAMILY_LOADING[family]
    except KeyError:
        raise ModelError(
            describe(
                f"unknown model family {family!r}",
                field="family",
                expected=" | ".join(FAMILY_LOADING),
                found=repr(family),
                fix="use one of the families `sam2-finetune models` lists",
            )
        ) from None


def _resolve(path: str | Path) -> str:
    from sam2_finetune.models.tiny import resolve_checkpoint

    return resolve_checkpoint(str(path))


def _check_remote_code(family: str, row: FamilyLoading, trust_remote_code: bool) -> None:
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


def _check_family(source: str, family: str, row: FamilyLoading) -> None:
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

    Works the same for a tiny folder and a real checkpoint: the processor class comes from
    :data:`FAMILY_LOADING`, not from the JSON in the folder, and its image processor is the PIL
    backend. Raises :class:`ModelError` when the folder lacks a tokenizer or an image processor.

    >>> processor = load_processor("tiny:smolvlm", "smolvlm")  # doctest: +SKIP
    """
    row = family_loading(family)
    _check_remote_code(family, row, trust_remote_code)
    source = _resolve(path)
    _check_family(source, family, row)
    try:
        if row.trust_remote_code:
            loader = getattr(transformers, row.processor_class)
            return loader.from_pretrained(source, trust_remote_code=True)
        processor_class = _LOCAL_PROCESSORS.get(row.processor_class) or getattr(
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

    skip = list(family_loading(family).skip_modules)
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
    bitsandbytes, keeping the family's :attr:`FamilyLoading.skip_modules` in full precision.
    ``dtype`` is the weights' dtype (and the 4-bit compute dtype); ``None`` keeps the saved one.

    >>> model = load_model("tiny:qwen2_vl", "qwen2_vl", quantization="4bit")  # doctest: +SKIP
    """
    row = family_loading(family)
    _check_remote_code(family, row, trust_remote_code)
    source = _resolve(path)
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
        return model_class.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(
            describe(
                f"cannot load the {family} model: {exc}",
                file=str(path),
                fix="point to a folder saved with save_pretrained, a Hub id, or 'tiny:<family>', "
                "and check that the family matches the checkpoint",
            )
        ) from exc
