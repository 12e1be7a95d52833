"""Batched generation: a (peft or plain) vision-language model answers examples, read back.

:func:`generate_answers` asks the model each example's prompt about its image and parses what it
writes with :func:`sam2_finetune.answer_formats.parse_answer`. What it holds to:

- **The training prompt.** The prompt text is built by
  :func:`sam2_finetune.models.chat.prompt_text`, the function the training collator uses: the
  family's chat template with its generation prompt, or PaliGemma's image placeholder + prompt
  (no chat template; its processor adds the ``<bos>`` and the newline it was trained with).
- **Left padding.** A batch is padded on the left (the tokenizer's side is switched for the call
  and put back), so every sequence ends where generation continues; greedy answers are then the
  same batched as one image at a time (tested per tiny family).
- **Greedy by default.** :class:`GenerationOptions` turns on sampling (temperature, top-k,
  top-p) or beam search.
- **A bounded answer.** ``max_new_tokens`` is derived from the answer format and the labels
  (:func:`answer_token_budget`, rule below) unless given; an answer cut there is reported
  (``Generated.truncated``) and, being incomplete, parses as a failure.
- **The family's decoding quirks.** New tokens are cut at the first end token (the generation
  config's ``eos_token_id`` values, the tokenizer's end and pad tokens); Qwen2-VL is decoded with
  ``skip_special_tokens=False`` because its box tokens (``<|box_start|>`` ...) are special tokens,
  other families with ``True``; decoder markers left around the text are stripped.
- **A miss, never an exception.** An unreadable answer is a :class:`ParsedAnswer` with
  ``ok=False``: the metrics count it as a parse failure and score it as an empty answer.

The ``max_new_tokens`` rule (:func:`answer_token_budget`): the tokens of the longest answer the
example's task can need, rendered in the format with the tokenizer, plus 10 % and 4 tokens for
the end of the turn. The longest answer lists ``objects_per_label`` objects (default 10) of each
label the task can name (every training label for ``detect``, one for ``ground`` / ``segment``),
at most 100 objects (COCOeval's ``maxDets``), each written with the label that tokenises longest
and 4-digit coordinates; ``segment`` objects carry a polygon of ``max_polygon_points`` points;
``count`` answers are a number. A batch uses the largest budget among its examples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from sam2_finetune.answer_formats import (
    AnswerObject,
    ParsedAnswer,
    get_format,
    parse_answer,
    render_answer,
)
from sam2_finetune.errors import OptionsError, describe
from sam2_finetune.models.chat import processor_resized_wh, prompt_text
from sam2_finetune.tasks import Example

__all__ = [
    "MAX_OBJECTS",
    "OBJECTS_PER_LABEL",
    "Generated",
    "GenerationOptions",
    "answer_token_budget",
    "decode_answer",
    "generate_answers",
]

OBJECTS_PER_LABEL = 10
MAX_OBJECTS = 100  # COCOeval scores at most 100 detections per image
# Families whose answers hold special tokens that skip_special_tokens=True would delete.
KEEP_SPECIAL_TOKENS = ("qwen2_vl",)
_END_MARKERS = ("<|im_end|>", "<|endoftext|>", "<end_of_utterance>", "<end_of_turn>", "</s>")


class GenerationOptions(BaseModel):
    """How answers are generated: greedy unless sampling or beams are asked for."""

    model_config = ConfigDict(extra="forbid")

    do_sample: bool = Field(False, description="Sample instead of greedy decoding.")
    temperature: float = Field(1.0, gt=0, le=100, description="Sampling temperature.")
    top_k: int | None = Field(None, ge=1, le=1_000_000, description="Sample from the k best.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    num_beams: int = Field(1, ge=1, le=64, description="Beam search width; 1: none.")
    max_new_tokens: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="Most tokens per answer; default: derived from the answer format and the "
        "labels (docs: the max_new_tokens rule).",
    )
    objects_per_label: int = Field(
        OBJECTS_PER_LABEL,
        ge=1,
        le=MAX_OBJECTS,
        description="Objects per label the derived max_new_tokens leaves room for.",
    )

    @model_validator(mode="after")
    def _sampling_rules(self) -> GenerationOptions:
        if not self.do_sample and (self.top_k is not None or self.top_p is not None):
            raise ValueError("top_k / top_p only apply with do_sample: true")
        return self


@dataclass(frozen=True)
class Generated:
    """One generated answer: the prompt text the model continued (chat-rendered), the answer as
    decoded (end tokens removed), what it parses to, how many tokens it took, and whether it
    stopped at ``max_new_tokens`` without an end token (``truncated``)."""

    prompt: str
    text: str
    parsed: ParsedAnswer
    new_tokens: int
    truncated: bool


# ---- the max_new_tokens rule ------------------------------------------------------------------


def answer_token_budget(
    tokenizer: Any,
    answer_format: str,
    labels: Sequence[str],
    *,
    task: str = "detect",
    objects_per_label: int = OBJECTS_PER_LABEL,
    max_polygon_points: int = 32,
) -> int:
    """``max_new_tokens`` for one ``task`` in ``answer_format`` with these training ``labels``
    (see the module for the rule). Deterministic: the same tokenizer, format and labels give
    the same budget."""
    spec = get_format(answer_format)
    labels = [str(label) for label in labels] or ["object"]
    if task == "count":
        text = spec.render_count(9999)
    else:
        longest = max(labels, key=lambda label: (_tokens(tokenizer, label), label))
        named = len(labels) if task == "detect" else 1
        n = min(MAX_OBJECTS, named * objects_per_label)
        polygon = None
        if task == "segment":
            k = max(3, max_polygon_points)
            polygon = [
                [
                    (
                        500 + 400 * math.cos(2 * math.pi * i / k),
                        500 + 400 * math.sin(2 * math.pi * i / k),
                    )
                    for i in range(k)
                ]
            ]
        obj = AnswerObject(longest, (123.4, 234.5, 654.3, 543.2), polygon)
        text = render_answer(
            [obj] * n,
            answer_format,
            (1000, 1000),
            resized_wh=(1998, 1998) if spec.needs_resized_wh else None,
            task="segment" if task == "segment" and spec.supports_polygons else "detect",
        )
    return math.ceil(_tokens(tokenizer, text) * 1.1) + 4


def _tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


# ---- decoding ------------------------------------------------------------------------------------


def _end_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    config = getattr(model, "generation_config", None)
    for value in (
        getattr(config, "eos_token_id", None),
        getattr(config, "pad_token_id", None),
        tokenizer.eos_token_id,
        tokenizer.pad_token_id,
    ):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


def decode_answer(tokenizer: Any, family: str, new_ids: Sequence[int], end_ids: set[int]) -> str:
    """The answer text of one sequence of generated token ids: cut at the first end token,
    decoded the family's way (Qwen2-VL keeps special tokens), decoder markers stripped."""
    ids = list(new_ids)
    for i, token in enumerate(ids):
        if token in end_ids:
            ids = ids[:i]
            break
    text = tokenizer.decode(ids, skip_special_tokens=family not in KEEP_SPECIAL_TOKENS)
    for marker in (*_END_MARKERS, tokenizer.eos_token, tokenizer.pad_token):
        if marker:
            text = text.replace(marker, "")
    return text.strip()


# ---- generation ---------------------------------------------------------------------------------


def _generation_kwargs(options: GenerationOptions) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"do_sample": options.do_sample, "num_beams": options.num_beams}
    if options.do_sample:
        kwargs["temperature"] = options.temperature
        if options.top_k is not None:
            kwargs["top_k"] = options.top_k
        if options.top_p is not None:
            kwargs["top_p"] = options.top_p
    else:  # the checkpoint's generation_config may ask for sampling: greedy means greedy
        kwargs.update(temperature=None, top_k=None, top_p=None)
    return kwargs


def _check_items(items: Sequence[tuple[Any, Example]]) -> None:
    for i, item in enumerate(items):
        if (
            not isinstance(item, tuple)
            or len(item) != 2
            or not isinstance(item[1], Example)
            or not hasattr(item[0], "size")
        ):
            raise OptionsError(
                describe(
                    "each item to generate for is (image, example)",
                    field=f"items[{i}]",
                    expected="(PIL.Image, tasks.Example)",
                    found=type(item).__name__,
                    fix="build examples with tasks.examples_for_row and pair each with its "
                    "frame's image",
                )
            )


def generate_answers(
    model: Any,
    processor: Any,
    family: str,
    answer_format: str,
    items: Sequence[tuple[Any, Example]],
    *,
    batch_size: int = 8,
    labels: Sequence[str] | None = None,
    options: GenerationOptions | None = None,
    max_polygon_points: int = 32,
) -> list[Generated]:
    """Generate and parse an answer for each ``(image, example)`` of ``items``, in order.

    ``labels`` are the training labels (they size ``max_new_tokens``; default: the examples'
    own labels). The model's training mode and the tokenizer's padding side are restored.
    """
    import torch

    _check_items(items)
    if batch_size < 1:
        raise OptionsError(
            describe("batch size must be at least 1", field="batch_size", found=batch_size)
        )
    options = options or GenerationOptions()
    tokenizer = processor.tokenizer
    vocabulary = (
        list(labels)
        if labels is not None
        else sorted({label for _, example in items for label in example.labels if label})
    )
    budgets: dict[str, int] = {}
    end_ids = _end_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(end_ids)
    kwargs = _generation_kwargs(options)
    needs_resized = get_format(answer_format).needs_resized_wh
    out: list[Generated] = []
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    try:
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            prompts = [prompt_text(processor, family, example.prompt) for _, example in batch]
            limit = options.max_new_tokens or max(
                budgets.setdefault(
                    example.task,
                    answer_token_budget(
                        tokenizer,
                        answer_format,
                        vocabulary,
                        task=example.task,
                        objects_per_label=options.objects_per_label,
                        max_polygon_points=max_polygon_points,
                    ),
                )
                for _, example in batch
            )
            inputs = processor(
                text=prompts,
                images=[[image.convert("RGB")] for image, _ in batch],
                padding=True,
                return_tensors="pt",
            )
            inputs = inputs.to(model.device)
            if getattr(model, "dtype", None) is not None and "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
            with torch.no_grad():
                sequences = model.generate(
                    **inputs, max_new_tokens=limit, pad_token_id=pad_id, **kwargs
                )
            new = sequences[:, inputs["input_ids"].shape[1] :].tolist()
            for (image, _), prompt, ids in zip(batch, prompts, new, strict=True):
                ended = any(token in end_ids for token in ids)
                used = next((i for i, t in enumerate(ids) if t in end_ids), len(ids))
                text = decode_answer(tokenizer, family, ids, end_ids)
                wh = (int(image.size[0]), int(image.size[1]))
                resized = processor_resized_wh(processor, *wh) if needs_resized else None
                parsed = parse_answer(text, answer_format, wh, resized_wh=resized)
                truncated = not ended and used >= limit
                if truncated and parsed.ok:
                    # A cut answer may still read (a JSON list cut between objects): say so.
                    parsed = ParsedAnswer(
                        parsed.objects,
                        parsed.count,
                        False,
                        [*parsed.problems, f"stopped at max_new_tokens={limit}"],
                    )
                out.append(Generated(prompt, text, parsed, used, truncated))
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out
