"""Processors of Qwen2-VL, Qwen2.5-VL and SmolVLM without their video processor.

Their stock processors also build a *video* processor, which needs torchvision; torchvision does
not import next to our torch. These subclasses take images only. Importing this module registers
them with ``AutoProcessor``: without that, ``AutoProcessor.from_pretrained`` on a saved tiny folder
cannot resolve the class name written in ``processor_config.json`` and silently returns only the
tokenizer. The registry (:data:`sam2_finetune.models.registry.FAMILIES`) names them by class name;
:data:`LOCAL_PROCESSORS` turns those names into classes.
"""

from __future__ import annotations

from transformers import (
    AutoProcessor,
    Qwen2_5_VLConfig,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLProcessor,
    SmolVLMConfig,
    SmolVLMProcessor,
)
from transformers.processing_utils import ProcessorMixin


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


AutoProcessor.register(Qwen2VLConfig, Qwen2VLProcessorWithoutVideo, exist_ok=True)
AutoProcessor.register(Qwen2_5_VLConfig, Qwen2_5_VLProcessorWithoutVideo, exist_ok=True)
AutoProcessor.register(SmolVLMConfig, SmolVLMProcessorWithoutVideo, exist_ok=True)

# Class name (as the registry writes it) -> class.
LOCAL_PROCESSORS: dict[str, type[ProcessorMixin]] = {
    cls.__name__: cls
    for cls in (
        Qwen2VLProcessorWithoutVideo,
        Qwen2_5_VLProcessorWithoutVideo,
        SmolVLMProcessorWithoutVideo,
    )
}
