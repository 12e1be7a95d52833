"""Canonical dataset rows -> model inputs with labels on the answer tokens only.

:class:`VisionLanguageCollator` is what the Trainer calls for each batch. For each canonical row
(one annotated frame) it draws an example (task, label asked, phrasing) through the same public
example builder as ``convert``, from a ``random.Random`` seeded with the run's seed, the epoch and
the frame's ``image_id``: epoch 0 gives exactly the examples ``convert`` writes, later epochs other
draws of the same frames. Then it builds the family's chat, runs the family's processor on the
whole batch (right padding), and sets ``labels`` to -100 everywhere but the assistant's answer
(system and user text, image tokens, padding are never trained on).

Finding the answer's tokens without ``{% generation %}`` (real chat templates lack it): the full
chat text is the prompt (``add_generation_prompt=True``) followed by the answer turn, so the answer
turn's tokens are the last ones of each sequence; they are checked against the tokenizer's own
tokenisation of that text, and only if the boundary merged differently is the prompt processed
alone to measure it. A prompt placed once is remembered, per image size, with its tokens in
context (image tokens included): a later row that opens with exactly those tokens has its answer
right after them (the tokens before cover exactly the prompt's text), and its answer is not
tokenised at all; a row that does not is placed as above. PaliGemma has no chat template: its
processor takes the answer as ``suffix=`` and writes the labels itself.

An example longer than ``max_length`` is never cut (that would cut through image tokens or leave
an answer without its end): its answer is shortened by dropping objects from its end, and the
prompt then asks for that many objects only, so the pair stays true; an example that does not fit
even with one object is skipped and counted (``skipped``), with a warning the first time.

DataLoader worker processes (``training.dataloader_workers``) may run the collator: everything it
draws is seeded by the run's seed, the epoch and the frame, never by the process, so batches are
the same in a worker as in the main process. A worker gets a copy of the collator when it starts
(the Trainer starts them at each epoch and each evaluation, after the callbacks have set ``epoch``
and ``training``); the counts of shortened and skipped examples live in a small shared-memory
tensor with one row per process, which the main process sums. A worker ignores SIGINT: Ctrl-C
reaches the whole process group, and the main process answers it (``InterruptCallback``: finish
the step, save, stop) with batches still to come from its workers. SIGTERM is left alone: it is how
the DataLoader and ``multiprocessing`` stop a worker that does not exit; a SIGTERM sent to every
process (some cluster schedulers do) therefore ends the run at its last saved checkpoint, from
which ``--resume`` continues.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from sam2_finetune.answer_formats import get_format, render_answer
from sam2_finetune.dataset import row_image
from sam2_finetune.errors import DatasetError, OptionsError, describe
from sam2_finetune.models.chat import (
    answer_frame,
    apply_image_settings,
    chat_texts,
    is_prefix_suffix,
    processor_resized_wh,
    prompt_text,
)
from sam2_finetune.models.record import ImageSettings
from sam2_finetune.tasks import Example, ExampleOptions, examples_for_row
from sam2_finetune.train.augment import AugmentOptions, augment_rng, augment_row
from sam2_finetune.train.config import MAX_DATALOADER_WORKERS

if TYPE_CHECKING:
    from sam2_finetune.train.config import TrainConfig

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100
PROMPT_CACHE_SIZE = 4096  # rendered prompts kept per collator (a few hundred in practice)
SHORTENED, SKIPPED = 0, 1  # the columns of the shared counts


def _shared_counts() -> Any:
    """One row per process (row 0: the main process, row i + 1: DataLoader worker i), columns
    SHORTENED and SKIPPED, in shared memory: a forked worker writes the parent's rows, and a
    spawned one receives them through torch's pickling. One writer per row: no lock needed."""
    import torch

    return torch.zeros((MAX_DATALOADER_WORKERS + 1, 2), dtype=torch.int64).share_memory_()


def _worker_row() -> int:
    """This process's row of the shared counts; the first call in a DataLoader worker also makes
    the worker ignore SIGINT (see the module)."""
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    if info is None:
        return 0
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if info.id >= MAX_DATALOADER_WORKERS:
        raise OptionsError(
            describe(
                "too many DataLoader workers for the collator's counts",
                field="training.dataloader_workers",
                expected=f"at most {MAX_DATALOADER_WORKERS}",
                found=str(info.num_workers),
                fix=f"set training.dataloader_workers to {MAX_DATALOADER_WORKERS} or fewer",
            )
        )
    return info.id + 1


def _token_ids(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    """``tokenizer(texts, add_special_tokens=False)["input_ids"]``, through the Rust tokenizer
    directly when there is one (the Python wrapper's batching costs more than the encoding
    here). A mismatch is caught by the caller's check, which then measures the prompt."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer(texts, add_special_tokens=False)["input_ids"]
    # One encode per text: encode_batch's thread pool costs more than it saves on a few tails.
    return [backend.encode(text, add_special_tokens=False).ids for text in texts]


@dataclass
class Encoded:
    """One example ready for the processor: the image, the chat texts and the example."""

    image: Any
    example: Example
    prompt_text: str
    full_text: str


@dataclass
class VisionLanguageCollator:
    """Batches of canonical rows -> processor outputs with ``labels`` (see the module).

    ``options`` are the example-building options, the same model as ``convert``'s (the config's
    ``data`` section is one); ``vocabulary`` the dataset's labels (negative examples). ``seed``
    and ``epoch`` fix the draw of tasks (the training callback sets ``epoch``). Each row gives
    ``options.examples_per_frame`` examples to the batch. ``augment`` transforms each row's
    frame, boxes and masks first (:mod:`sam2_finetune.train.augment`), only while ``training``
    is true (``AugmentCallback`` sets it while the Trainer trains, never while it evaluates).
    ``image`` are the run's image settings (pixel bounds, longest edge, slices), applied to the
    processor with :func:`sam2_finetune.models.chat.apply_image_settings`, as inference applies
    the run's record; default: ``options``' pixel bounds.
    """

    processor: Any
    family: str
    answer_format: str
    vocabulary: Sequence[str]
    options: ExampleOptions = field(default_factory=ExampleOptions)
    seed: int = 42
    max_length: int = 2048
    epoch: int = 0
    augment: AugmentOptions | None = None
    image: ImageSettings | None = None
    training: bool = False
    _counts: Any = field(default_factory=_shared_counts, repr=False, compare=False)
    _warned: bool = field(default=False, repr=False)
    # prompt -> (its rendered text, the (head, tail) around any answer, or None: see _texts)
    _prompts: dict[str, tuple[str, tuple[str, str] | None]] = field(
        default_factory=dict, repr=False
    )
    # (prompt text, image size) -> the prompt's token ids in context, image tokens included
    _prompt_ids: dict[tuple[str, tuple[int, int]], list[int]] = field(
        default_factory=dict, repr=False
    )

    # --- counts ---------------------------------------------------------------------------

    @property
    def shortened(self) -> int:
        """Examples whose answer was shortened to fit ``max_length``, in every process."""
        return int(self._counts[:, SHORTENED].sum())

    @property
    def skipped(self) -> int:
        """Examples skipped because even one object did not fit, in every process."""
        return int(self._counts[:, SKIPPED].sum())

    def _count(self, column: int) -> None:
        self._counts[_worker_row(), column] += 1

    # --- examples -------------------------------------------------------------------------

    def __post_init__(self) -> None:
        # The one function inference applies too (evaluate.loading), from the run's record.
        image = self.image or ImageSettings(
            min_pixels=self.options.min_pixels, max_pixels=self.options.max_pixels
        )
        apply_image_settings(self.processor, self.family, image)

    def resized_wh(self, width: int, height: int) -> tuple[int, int] | None:
        """The processor's resized size for formats whose coordinates are in resized pixels."""
        if not get_format(self.answer_format).needs_resized_wh:
            return None
        return processor_resized_wh(self.processor, width, height)

    def examples(self, row: Mapping[str, Any]) -> list[Example]:
        """The examples of ``row`` at this epoch (epoch 0: the ones ``convert`` writes), through
        the one public example builder."""
        return examples_for_row(
            row,
            self.options,
            self.answer_format,
            seed=self.seed,
            epoch=self.epoch,
            vocabulary=self.vocabulary,
            resized_wh=self.resized_wh(int(row["width"]), int(row["height"])),
        )

    def example(self, row: Mapping[str, Any]) -> Example:
        """The first example of ``row`` at this epoch."""
        return self.examples(row)[0]

    # --- chat -----------------------------------------------------------------------------

    @property
    def prefix_suffix(self) -> bool:
        return is_prefix_suffix(self.family)

    def _texts(self, prompt: str, answer: str) -> tuple[str, str]:
        # The one prompt builder generation uses too (models.chat). A run asks few distinct
        # prompts (templates x labels): each is rendered once, with its answer's surroundings,
        # so later examples of the prompt render no template at all.
        cached = self._prompts.get(prompt)
        if cached is None:
            first = prompt_text(self.processor, self.family, prompt)
            first, full = chat_texts(self.processor, self.family, prompt, answer, first=first)
            if len(self._prompts) < PROMPT_CACHE_SIZE:
                frame = answer_frame(
                    self.processor, self.family, prompt, first=first, answer=answer, full=full
                )
                self._prompts[prompt] = (first, frame)
            return first, full
        first, frame = cached
        if frame is None:  # the template does not copy answers verbatim: render each
            return chat_texts(self.processor, self.family, prompt, answer, first=first)
        return first, frame[0] + answer + frame[1]

    def encode(self, image: Any, example: Example) -> Encoded:
        prompt_text, full_text = self._texts(example.prompt, example.answer)
        return Encoded(image, example, prompt_text, full_text)

    def _process(self, items: Sequence[Encoded]) -> dict[str, Any]:
        images = [[item.image] for item in items]
        if self.prefix_suffix:
            return dict(
                self.processor(
                    text=[item.prompt_text for item in items],
                    images=images,
                    suffix=[item.full_text for item in items],
                    padding=True,
                    return_tensors="pt",
                )
            )
        batch = dict(
            self.processor(
                text=[item.full_text for item in items],
                images=images,
                padding=True,
                return_tensors="pt",
            )
        )
        batch.pop("labels", None)
        batch["labels"] = self._answer_labels(batch, items)
        return batch

    def _answer_labels(self, batch: dict[str, Any], items: Sequence[Encoded]) -> Any:
        import torch

        tokenizer = self.processor.tokenizer
        input_ids, attention = batch["input_ids"], batch["attention_mask"]
        width = input_ids.shape[1]
        # Each row's first and last attended token, for the whole batch in two tensor ops.
        firsts = attention.argmax(dim=1).tolist()
        if tokenizer.padding_side == "right":
            ends = (width - attention.flip(1).argmax(dim=1)).tolist()
        else:
            ends = [width] * len(items)
        rows = input_ids.tolist()
        # A prompt already placed for this image size: its tokens in context are known, and the
        # row starting with exactly them places the answer (the tokens before it cover exactly
        # the prompt's text, so the rest is the answer's). The rest: tokenise the answers.
        starts: list[int | None] = []
        for i, item in enumerate(items):
            known = self._prompt_ids.get((item.prompt_text, item.image.size))
            end = firsts[i] + len(known) if known is not None else None
            starts.append(end if end is not None and rows[i][firsts[i] : end] == known else None)
        unplaced = [i for i, start in enumerate(starts) if start is None]
        tails = [items[i].full_text[len(items[i].prompt_text) :] for i in unplaced]
        for i, tail_ids in zip(unplaced, _token_ids(tokenizer, tails), strict=True):
            item, start = items[i], ends[i] - len(tail_ids)
            if rows[i][start : ends[i]] == tail_ids:
                prompt_ids = rows[i][firsts[i] : start]
            else:
                # The boundary tokenised differently: measure the prompt alone.
                alone = self.processor(
                    text=[item.prompt_text], images=[[item.image]], return_tensors="pt"
                )
                prompt_ids = alone["input_ids"][0].tolist()
                start = firsts[i] + len(prompt_ids)
            if len(self._prompt_ids) < PROMPT_CACHE_SIZE:
                self._prompt_ids[(item.prompt_text, item.image.size)] = prompt_ids
            starts[i] = start
        columns = torch.arange(width)
        answer = (columns >= torch.tensor(starts)[:, None]) & (
            columns < torch.tensor(ends)[:, None]
        )
        return torch.where(answer, input_ids, IGNORE_INDEX)

    # --- length ---------------------------------------------------------------------------

    def _shorter(self, item: Encoded, keep: int) -> Encoded:
        example = item.example
        objects = example.objects[:keep]
        image_wh = item.image.size
        answer = render_answer(
            objects,
            self.answer_format,
            image_wh,
            resized_wh=self.resized_wh(*image_wh),
            task=example.task,
        )
        prompt = f"{example.prompt} List only the first {keep}."
        return self.encode(
            item.image, replace(example, objects=objects, answer=answer, prompt=prompt)
        )

    def _fit(self, item: Encoded) -> Encoded | None:
        """``item`` shortened to ``max_length`` tokens; None when one object is already too long."""
        length = self._length(item)
        if length <= self.max_length:
            return item
        objects = len(item.example.objects)
        if item.example.task in ("detect", "ground", "segment") and objects > 1:
            answer_tokens = max(1, len(self.processor.tokenizer(item.example.answer)["input_ids"]))
            per_object = answer_tokens / objects
            keep = int(objects - (length - self.max_length) / per_object)
            while keep >= 1:
                shorter = self._shorter(item, keep)
                if self._length(shorter) <= self.max_length:
                    self._count(SHORTENED)
                    return shorter
                keep -= 1
        self._count(SKIPPED)
        if not self._warned:
            logger.warning(
                "an example of %s is longer than data.max_length=%d tokens even with one object; "
                "it is skipped (counted in the run summary). Raise data.max_length or lower the "
                "image resolution.",
                item.example.labels,
                self.max_length,
            )
            self._warned = True
        return None

    def _length(self, item: Encoded) -> int:
        return int(self._process([item])["input_ids"].shape[1])

    # --- the batch ------------------------------------------------------------------------

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        _worker_row()  # in a DataLoader worker: ignore SIGINT, which the main process answers
        items = []
        for row in rows:
            image = row_image(row)
            if self.training and self.augment is not None:
                rng = augment_rng(self.seed, self.epoch, str(row["image_id"]))
                row, image = augment_row(row, image, self.augment, rng)
            items += [self.encode(image, example) for example in self.examples(row)]
        batch = self._process(items)
        if int(batch["input_ids"].shape[1]) > self.max_length:
            fitted = [self._fit(item) for item in items]
            items = [item for item in fitted if item is not None]
            if not items:
                raise DatasetError(
                    describe(
                        "no example of this batch fits data.max_length even with one object",
                        expected=f"at most {self.max_length} tokens",
                        found=f"{len(rows)} example(s) longer",
                        fix="raise data.max_length, or lower the image resolution "
                        "(data.max_pixels / data.longest_edge)",
                    )
                )
            batch = self._process(items)
        return batch


def collator_for_config(
    config: TrainConfig, processor: Any, labels: Sequence[str]
) -> VisionLanguageCollator:
    """The collator a run of ``config`` trains with (``labels``: the dataset's vocabulary)."""
    data = config.data
    return VisionLanguageCollator(
        processor=processor,
        family=config.model.family,
        answer_format=str(data.answer_format),
        vocabulary=labels,
        options=ExampleOptions.model_validate(
            {name: getattr(data, name) for name in ExampleOptions.model_fields}
        ),
        seed=config.training.seed,
        max_length=data.max_length,
        augment=data.augment,
        image=ImageSettings(
            min_pixels=data.min_pixels,
            max_pixels=data.max_pixels,
            longest_edge=data.longest_edge,
            max_slices=data.max_slices,
        ),
    )
