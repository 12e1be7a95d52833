"""The text a family's model sees for one example: the prompt, and the prompt with its answer.

One place for it, because the prompt a model is trained on (``train.collator``) and the prompt it
is asked at evaluation (``evaluate.generate``) must be the same string, character for character:
a different turn layout or a missing generation prompt shifts what the model writes. It lives
below both stages (``evaluate`` never imports ``train``), next to the family table it reads.

- Chat-template families: one user turn holding the image and the prompt; the prompt text is
  that turn rendered with ``add_generation_prompt=True`` (what generation continues), the full
  text the user turn plus the assistant's answer turn.
- ``prefix_suffix`` families (PaliGemma): no chat template; the prefix is the image placeholder
  followed by the prompt, and the answer goes to the processor as ``suffix=``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sam2_finetune.answer_formats import qwen_smart_resize
from sam2_finetune.errors import DatasetError, describe
from sam2_finetune.models.registry import get_family

if TYPE_CHECKING:
    from sam2_finetune.models.record import ImageSettings

__all__ = [
    "answer_frame",
    "apply_image_settings",
    "chat_texts",
    "is_prefix_suffix",
    "processor_resized_wh",
    "prompt_text",
    "set_pixel_limits",
]


def is_prefix_suffix(family: str) -> bool:
    """Whether ``family`` takes a prefix and a ``suffix=`` answer instead of a chat (PaliGemma)."""
    return get_family(family).prompt_style == "prefix_suffix"


def _user_turn(prompt: str) -> dict[str, Any]:
    return {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}


def prompt_text(processor: Any, family: str, prompt: str) -> str:
    """The text generation continues from: the user turn (image and ``prompt``) with the
    template's generation prompt, or PaliGemma's image placeholder + ``prompt``."""
    if is_prefix_suffix(family):
        return get_family(family).image_placeholder + prompt
    return processor.apply_chat_template([_user_turn(prompt)], add_generation_prompt=True)


def chat_texts(
    processor: Any, family: str, prompt: str, answer: str, *, first: str | None = None
) -> tuple[str, str]:
    """``(prompt text, full text)`` of one training example. For chat families the full text
    starts with the prompt text (checked: the answer's tokens are found from that); for
    PaliGemma the second item is the answer, which its processor takes as ``suffix=``.
    ``first``: :func:`prompt_text` of ``prompt`` when the caller has it already (the collator
    keeps the prompts it has rendered: a run asks few distinct prompts)."""
    if first is None:
        first = prompt_text(processor, family, prompt)
    if is_prefix_suffix(family):
        return first, answer
    turn = {"role": "assistant", "content": [{"type": "text", "text": answer}]}
    full = processor.apply_chat_template([_user_turn(prompt), turn])
    if not full.startswith(first):
        raise DatasetError(
            describe(
                "the chat template writes the prompt differently with and without the "
                "answer, so the answer's tokens cannot be found",
                field=f"{family} chat template",
                fix="use a checkpoint whose chat template renders the user turn the same "
                "with add_generation_prompt=True",
            )
        )
    return first, full


# Stands for the answer when the template is rendered once per prompt (answer_frame): private-use
# characters no answer format writes, so the template cannot mistake it for content it alters.
ANSWER_SLOT = "\ue000answer\ue001"


def answer_frame(
    processor: Any, family: str, prompt: str, *, first: str, answer: str, full: str
) -> tuple[str, str] | None:
    """``(head, tail)`` with ``head + answer + tail`` the full text of ``prompt`` for any answer,
    so a training run renders the chat template once per prompt instead of once per example.

    ``first``, ``answer`` and ``full`` are one example rendered the ordinary way
    (:func:`chat_texts`), the check that the template copies the answer verbatim. None when it
    does not (a template that trims, escapes or inspects the answer): then every example must be
    rendered through :func:`chat_texts`."""
    if is_prefix_suffix(family):
        frame: tuple[str, str] = ("", "")
    else:
        _, slotted = chat_texts(processor, family, prompt, ANSWER_SLOT, first=first)
        if slotted.count(ANSWER_SLOT) != 1:
            return None
        head, tail = slotted.split(ANSWER_SLOT)
        frame = (head, tail)
    return frame if frame[0] + answer + frame[1] == full else None


def _size_value(size: Any, key: str) -> Any:
    return size.get(key) if isinstance(size, Mapping) else getattr(size, key, None)


def processor_resized_wh(processor: Any, width: int, height: int) -> tuple[int, int]:
    """``(width, height)`` a Qwen2-VL-style image processor resizes a ``width x height`` image to,
    from the processor's own settings (transformers 5 keeps ``min_pixels`` / ``max_pixels`` as
    ``size.shortest_edge`` / ``size.longest_edge``; the factor is patch size x merge size)."""
    image_processor = processor.image_processor
    size = image_processor.size
    factor = image_processor.patch_size * image_processor.merge_size
    h, w = qwen_smart_resize(
        height,
        width,
        factor=factor,
        min_pixels=_size_value(size, "shortest_edge"),
        max_pixels=_size_value(size, "longest_edge"),
    )
    return (w, h)


def set_pixel_limits(processor: Any, min_pixels: int | None, max_pixels: int | None) -> None:
    """Make a Qwen2-VL-style processor resize within ``min_pixels``..``max_pixels`` (the run's
    ``data.min_pixels`` / ``data.max_pixels``), so training, the answers' resized coordinates and
    a later ``save_pretrained`` all use the same limits."""
    image_processor = processor.image_processor
    size = image_processor.size
    lo = min_pixels if min_pixels is not None else _size_value(size, "shortest_edge")
    hi = max_pixels if max_pixels is not None else _size_value(size, "longest_edge")
    image_processor.size = {"shortest_edge": lo, "longest_edge": hi}


def apply_image_settings(processor: Any, family: str, settings: ImageSettings) -> None:
    """Make ``processor`` resize images as the model was trained (``settings``: the run's
    ``data`` image options, or an :class:`~sam2_finetune.models.record.InferenceRecord`'s
    ``image``). The training collator and :func:`sam2_finetune.evaluate.loading.load_for_inference`
    both call it, so training, evaluation and deployment resize alike: a model asked about an
    image resized otherwise than it learnt answers with shifted boxes.

    Which setting a family reads is its registry row's ``resolution``:

    - ``pixels`` (Qwen2-VL, Qwen2.5-VL): ``min_pixels`` / ``max_pixels`` (one given alone keeps
      the processor's other bound);
    - ``longest_edge`` (Idefics3, SmolVLM): the image is resized so its longest edge is
      ``longest_edge`` before it is cut into tiles (``size={"longest_edge": N}``);
    - ``slices`` (MiniCPM-V): at most ``max_slices`` slices besides the whole image;
    - ``fixed``: nothing to set.

    ``None`` keeps the processor's own value (what its saved files say); a setting the family
    does not read is left alone (``sam2-finetune check`` reports it for a training config).

    >>> from sam2_finetune.models.record import ImageSettings
    >>> settings = ImageSettings(longest_edge=1024)
    >>> apply_image_settings(processor, "smolvlm", settings)  # doctest: +SKIP
    """
    resolution = get_family(family).resolution
    image_processor = processor.image_processor
    pixels = settings.min_pixels is not None or settings.max_pixels is not None
    if resolution == "pixels" and pixels:
        set_pixel_limits(processor, settings.min_pixels, settings.max_pixels)
    elif resolution == "longest_edge" and settings.longest_edge is not None:
        image_processor.size = {"longest_edge": int(settings.longest_edge)}
    elif resolution == "slices" and settings.max_slices is not None:
        # MiniCPM-V's image processor (remote code) reads max_slice_nums at each call.
        image_processor.max_slice_nums = int(settings.max_slices)
