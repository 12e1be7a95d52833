"""The collator: for every tiny family, exactly the answer's tokens are trained on."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from pathlib import Path  # noqa: E402

from sam2_finetune.convert import ConvertOptions, convert  # noqa: E402
from sam2_finetune.dataset import category_names, load_canonical  # noqa: E402
from sam2_finetune.models.loading import load_processor  # noqa: E402
from sam2_finetune.models.registry import get_family  # noqa: E402
from sam2_finetune.models.tiny import TINY_FAMILIES  # noqa: E402
from sam2_finetune.tasks import ExampleOptions, default_task_mix, examples_for_row  # noqa: E402
from sam2_finetune.train.collator import IGNORE_INDEX, VisionLanguageCollator  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
FAMILIES = list(TINY_FAMILIES)
FORMATS = {"paligemma": "paligemma", "qwen2_5_vl": "qwen2_5_vl", "qwen2_vl": "qwen2_vl"}

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("collator") / "hf"
    convert(ConvertOptions(exports=[SAMPLE / "kitchen.zip"], to="hf", out=out))
    dataset = load_canonical(out)
    with_objects = dataset.filter(lambda row: len(row["objects"]) >= 2)
    return [with_objects[i] for i in range(4)], category_names(dataset)


def collator_for(tiny_dirs, family, vocabulary, **options):
    answer_format = FORMATS.get(family, "json")
    values = {"task_mix": default_task_mix(answer_format), **options}
    max_length = values.pop("max_length", 2048)
    return VisionLanguageCollator(
        processor=load_processor(tiny_dirs(family), family),
        family=family,
        answer_format=answer_format,
        vocabulary=vocabulary,
        options=ExampleOptions(**values),
        max_length=max_length,
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_only_the_answer_is_trained_on(tiny_dirs, rows, family):
    rows, vocabulary = rows
    collator = collator_for(tiny_dirs, family, vocabulary)
    batch = collator(rows)
    tokenizer = collator.processor.tokenizer
    image_token = tokenizer.convert_tokens_to_ids(get_family(family).image_token)
    labels = batch["labels"]
    assert labels.shape == batch["input_ids"].shape
    assert not (labels == image_token).any()  # image tokens are never targets
    assert (labels[batch["attention_mask"] == 0] == IGNORE_INDEX).all()  # nor padding
    for i, row in enumerate(rows):
        answer = collator.example(row).answer
        trained = labels[i][labels[i] != IGNORE_INDEX]
        text = tokenizer.decode(trained)
        # The answer (after the template's space, for LLaVA), then only the end of the turn.
        assert text.lstrip().startswith(answer), (text, answer)
        rest = text.lstrip()[len(answer) :]
        assert len(rest.strip()) <= len("<end_of_utterance>"), rest
        # Everything before the answer is masked: it is one contiguous run at the end.
        where = (labels[i] != IGNORE_INDEX).nonzero().flatten().tolist()
        assert where == list(range(where[0], where[-1] + 1))


def test_epoch_zero_is_convert_s_draw_and_other_epochs_differ(tiny_dirs, rows, tmp_path):
    rows, vocabulary = rows
    collator = collator_for(tiny_dirs, "smolvlm", vocabulary)
    first = [collator.example(row) for row in rows]
    # The same public builder as convert: what convert --to llava writes for these frames.
    assert first == [
        examples_for_row(row, collator.options, "json", seed=42, vocabulary=vocabulary)[0]
        for row in rows
    ]
    convert(
        ConvertOptions(exports=[SAMPLE / "kitchen.zip"], to="llava", out=tmp_path / "ll", seed=42)
    )
    records = {
        r["id"].split("#")[0]: r["conversations"]
        for r in json.loads((tmp_path / "ll" / "llava.json").read_text())
    }
    for row, example in zip(rows, first, strict=True):
        human, gpt = records[row["image_id"]]
        assert human["value"].endswith(example.prompt) and gpt["value"] == example.answer
    assert [collator.example(row) for row in rows] == first  # deterministic
    collator.epoch = 1
    later = [collator.example(row) for row in rows]
    collator.epoch = 2
    assert later != first or [collator.example(row) for row in rows] != first


@pytest.mark.parametrize("family", ["smolvlm", "qwen2_vl", "paligemma"])
def test_an_overlong_example_is_shortened_never_cut(tiny_dirs, rows, family):
    rows, vocabulary = rows
    collator = collator_for(tiny_dirs, family, vocabulary, task_mix={"detect": 1.0})
    row = max(rows, key=lambda r: len(r["objects"]))
    full = collator([row])
    length = int(full["attention_mask"].sum())
    answer_tokens = int((full["labels"] != IGNORE_INDEX).sum())
    collator.max_length = length - answer_tokens // 3  # room for some objects, not all
    batch = collator([row])
    assert collator.shortened == 1 and collator.skipped == 0
    assert batch["input_ids"].shape[1] <= collator.max_length
    tokenizer = collator.processor.tokenizer
    text = tokenizer.decode(batch["labels"][0][batch["labels"][0] != IGNORE_INDEX])
    example = collator.example(row)
    assert text != example.answer and len(text) < len(example.answer)
    # The prompt says how many objects the answer lists.
    assert "List only the first" in tokenizer.decode(batch["input_ids"][0])


def test_an_example_too_long_even_with_one_object_is_skipped(tiny_dirs, rows, caplog):
    rows, vocabulary = rows
    collator = collator_for(tiny_dirs, "smolvlm", vocabulary, task_mix={"detect": 1.0})
    full = collator(rows[:2])
    lengths = full["attention_mask"].sum(1).tolist()
    answers = (full["labels"] != IGNORE_INDEX).sum(1).tolist()
    # Room for the first example's prompt and two answer tokens: not even one object fits.
    collator.max_length = int(lengths[0] - answers[0] + 2)
    from sam2_finetune.errors import DatasetError

    with pytest.raises(DatasetError, match="max_length"):
        collator(rows[:1])
    assert collator.skipped == 1 and "skipped" in caplog.text


def test_resized_size_is_the_processor_s_own(tiny_dirs, rows):
    """qwen2_5_vl answers are in resized pixels: the size used must be the processor's."""
    rows, vocabulary = rows
    for limits in ({}, {"min_pixels": 40 * 40, "max_pixels": 48 * 48}):
        collator = collator_for(tiny_dirs, "qwen2_5_vl", vocabulary, **limits)
        processor = collator.processor
        row = rows[0]
        image = row["image"].convert("RGB")
        grid = processor.image_processor(images=[image], return_tensors="pt")["image_grid_thw"][0]
        patch = processor.image_processor.patch_size
        expected = (int(grid[2]) * patch, int(grid[1]) * patch)
        assert collator.resized_wh(row["width"], row["height"]) == expected


@pytest.mark.parametrize("family", FAMILIES)
def test_texts_rendered_once_per_prompt_equal_the_template_s(tiny_dirs, rows, family):
    """The collator renders each prompt's template once and places later answers in it: the
    texts must be the ones the chat template writes for every example, over several epochs."""
    from sam2_finetune.models.chat import chat_texts

    rows, vocabulary = rows
    collator = collator_for(tiny_dirs, family, vocabulary)
    seen = 0
    for epoch in range(4):
        collator.epoch = epoch
        for row in rows:
            for example in collator.examples(row):
                ours = collator.encode(None, example)
                expected = chat_texts(collator.processor, family, example.prompt, example.answer)
                assert (ours.prompt_text, ours.full_text) == expected
                seen += 1
    assert seen > len(collator._prompts)  # some prompts came back with other answers


class _ToyTemplate:
    """A chat template written in Python: ``alter`` is applied to the assistant's text."""

    def __init__(self, alter):
        self.alter = alter

    def apply_chat_template(self, conversation, add_generation_prompt=False):
        out = ""
        for turn in conversation:
            text = "".join(part.get("text", "<image>") for part in turn["content"])
            if turn["role"] == "assistant":
                text = self.alter(text)
            out += f"<{turn['role']}>{text}</{turn['role']}>"
        return out + ("<assistant>" if add_generation_prompt else "")


@pytest.mark.parametrize(
    ("alter", "verbatim"),
    [(lambda t: t, True), (str.upper, False), (lambda t: t.strip() + ".", False)],
)
def test_the_answer_frame_is_used_only_for_templates_that_copy_answers(alter, verbatim):
    from sam2_finetune.models.chat import answer_frame, chat_texts

    processor = _ToyTemplate(alter)
    first, full = chat_texts(processor, "llava", "Find the cup.", "a cup ")
    frame = answer_frame(
        processor, "llava", "Find the cup.", first=first, answer="a cup ", full=full
    )
    if not verbatim:
        assert frame is None  # the collator then renders every example through chat_texts
        return
    head, tail = frame
    assert head == first and tail == "</assistant>"
    assert (
        head + "two cups" + tail == chat_texts(processor, "llava", "Find the cup.", "two cups")[1]
    )


@pytest.mark.parametrize("padding_side", ["right", "left"])
@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
def test_an_answer_tokenised_differently_alone_is_found_by_measuring_the_prompt(
    tiny_dirs, rows, family, padding_side, monkeypatch
):
    """When the answer's tokens alone differ from its tokens in context (a merge across the
    boundary), the collator measures the prompt instead: the labels are the same, on either
    padding side."""
    import sam2_finetune.train.collator as collator_module

    rows, vocabulary = rows
    collator = collator_for(tiny_dirs, family, vocabulary)
    tokenizer = collator.processor.tokenizer
    tokenizer.padding_side = padding_side
    expected = collator(rows)["labels"]
    for i, row in enumerate(rows):
        trained = tokenizer.decode(expected[i][expected[i] != IGNORE_INDEX])
        assert trained.lstrip().startswith(collator.example(row).answer)
    # A prompt known from an earlier batch whose tokens do not open the row (here: a cache
    # entry made wrong) is placed by its answer's tokens instead.
    known = dict(collator._prompt_ids)
    assert known  # every prompt of the first batch was placed and remembered
    collator._prompt_ids.update({key: [-1, *ids] for key, ids in known.items()})
    assert torch.equal(collator(rows)["labels"], expected)
    # ... and where those differ too, by measuring the prompt alone.
    collator._prompt_ids.clear()
    real = collator_module._token_ids
    monkeypatch.setattr(
        collator_module, "_token_ids", lambda tok, texts: [[-1, *ids] for ids in real(tok, texts)]
    )
    assert torch.equal(collator(rows)["labels"], expected)
    assert collator._prompt_ids == known  # the measured prompts are the ones placed before


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "paligemma"])
def test_prompts_placed_once_give_the_labels_of_placing_every_answer(
    tiny_dirs, rows, family, monkeypatch
):
    """A prompt (at an image size) placed once is recognised by its tokens opening later rows,
    without tokenising their answers: over several epochs the labels are exactly those of a
    collator that places every answer anew, and later epochs tokenise fewer answers."""
    import sam2_finetune.train.collator as collator_module

    rows, vocabulary = rows
    collator = collator_for(tiny_dirs, family, vocabulary)
    fresh = collator_for(tiny_dirs, family, vocabulary)
    tokenised = []
    real = collator_module._token_ids
    monkeypatch.setattr(
        collator_module,
        "_token_ids",
        lambda tok, texts: tokenised.append(len(texts)) or real(tok, texts),
    )
    ours_tokenised = 0
    for epoch in range(6):
        collator.epoch = fresh.epoch = epoch
        for batch in (rows[:2], rows[2:]):
            before = len(tokenised)
            ours = collator(batch)
            ours_tokenised += sum(tokenised[before:])
            fresh._prompt_ids.clear()
            assert torch.equal(ours["labels"], fresh(batch)["labels"])
    # 24 examples over 6 epochs: answers tokenised only for prompts new to their batch.
    assert len(collator._prompt_ids) <= ours_tokenised < 24


@pytest.mark.slow
def test_a_spawned_dataloader_worker_builds_the_same_batches_and_reports_its_counts(
    tiny_dirs, rows
):
    """``training.dataloader_workers``: a worker gets a pickled copy of the collator (spawn, the
    strictest start method) and builds exactly the batches the main process would; the examples
    it shortens reach the main process's counts; and it outlives a Ctrl-C (SIGINT reaches the
    whole process group; the training process answers it by finishing its step and saving, and
    may still be waiting for a batch)."""
    import os
    import signal

    from torch.utils.data import DataLoader

    rows, vocabulary = rows
    collator = collator_for(tiny_dirs, "smolvlm", vocabulary, task_mix={"detect": 1.0})
    collator.epoch = 3
    row = max(rows, key=lambda r: len(r["objects"]))
    full = collator([row])
    answer_tokens = int((full["labels"] != IGNORE_INDEX).sum())
    collator.max_length = int(full["attention_mask"].sum()) - answer_tokens // 3
    expected = [collator([r]) for r in rows]
    shortened = collator.shortened
    assert shortened >= 1 and collator._counts[1:].sum() == 0  # all counted by this process

    loader = DataLoader(
        rows,
        batch_size=1,
        collate_fn=collator,
        num_workers=1,
        multiprocessing_context="spawn",
    )
    batches = iter(loader)
    got = [next(batches)]
    os.kill(batches._workers[0].pid, signal.SIGINT)
    got += list(batches)
    assert len(got) == len(expected)
    for mine, theirs in zip(expected, got, strict=True):
        assert mine.keys() == theirs.keys()
        for key in mine:
            assert torch.equal(mine[key], theirs[key]), key
    assert collator.shortened == 2 * shortened  # the worker's count came back
    assert int(collator._counts[1, 0]) == shortened  # in the worker's row
