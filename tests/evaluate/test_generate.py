"""Generation: batched (left-padded) greedy answers equal one-at-a-time answers, the answer is
bounded, and whatever the model writes is parsed, never raised."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from PIL import Image  # noqa: E402

from sam2_finetune.answer_formats import AnswerObject, render_answer  # noqa: E402
from sam2_finetune.evaluate.generate import (  # noqa: E402
    GenerationOptions,
    answer_token_budget,
    generate_answers,
)
from sam2_finetune.metrics import GroundTruth, GroundTruthObject, MetricsAccumulator  # noqa: E402
from sam2_finetune.models.chat import prompt_text  # noqa: E402
from sam2_finetune.models.loading import load_model, load_processor  # noqa: E402
from sam2_finetune.tasks import ExampleOptions, examples_for_row  # noqa: E402

FORMATS = {"paligemma": "paligemma", "qwen2_5_vl": "qwen2_5_vl", "qwen2_vl": "qwen2_vl"}
LABELS = ["car", "dog"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def frame(i: int) -> tuple[dict, Image.Image]:
    """A frame with a car (and a dog on odd frames), its size varying with ``i``."""
    width, height = 64 + 8 * i, 48
    objects = [{"label": "car", "area": 6, "bbox": [4 + i, 6, 20, 12], "segmentation": None}]
    if i % 2:
        objects.append({"label": "dog", "area": 6, "bbox": [30, 20, 10, 10], "segmentation": None})
    row = {"image_id": f"v/{i:06d}", "width": width, "height": height, "objects": objects}
    return row, Image.new("RGB", (width, height), (40 * i, 90, 200 - 30 * i))


def items_for(family: str, n: int = 5) -> list:
    answer_format = FORMATS.get(family, "json")
    options = ExampleOptions(task_mix={"detect": 1, "ground": 1, "count": 1})
    out = []
    for i in range(n):
        row, image = frame(i)
        example = examples_for_row(row, options, answer_format, seed=3, vocabulary=LABELS)[0]
        out.append((image, example))
    return out


@pytest.fixture(scope="module")
def loaded(tiny_dirs):
    cache = {}

    def get(family):
        if family not in cache:
            path = tiny_dirs(family)
            cache[family] = (load_model(str(path), family), load_processor(path, family))
        return cache[family]

    return get


@pytest.mark.parametrize("family", ["smolvlm", "qwen2_vl", "paligemma", "qwen2_5_vl"])
def test_batched_left_padded_answers_equal_one_at_a_time(loaded, family):
    model, processor = loaded(family)
    answer_format = FORMATS.get(family, "json")
    items = items_for(family)
    prompts = [prompt_text(processor, family, example.prompt) for _, example in items]
    lengths = {len(processor.tokenizer(p)["input_ids"]) for p in prompts}
    assert len(lengths) > 1  # the batch really is padded
    options = GenerationOptions(max_new_tokens=12)
    side = processor.tokenizer.padding_side
    batched = generate_answers(
        model, processor, family, answer_format, items, batch_size=5, labels=LABELS, options=options
    )
    alone = [
        generate_answers(
            model,
            processor,
            family,
            answer_format,
            [item],
            batch_size=1,
            labels=LABELS,
            options=options,
        )[0]
        for item in items
    ]
    assert [g.text for g in batched] == [g.text for g in alone]
    assert [g.parsed for g in batched] == [g.parsed for g in alone]
    assert [g.prompt for g in batched] == prompts  # the training collator's prompt text
    assert processor.tokenizer.padding_side == side  # put back
    if family == "paligemma":
        assert batched[0].prompt.startswith("<image>") and "<start_of_turn>" not in prompts[0]


def test_the_answer_is_bounded_and_a_cut_answer_is_a_counted_miss(loaded):
    model, processor = loaded("smolvlm")
    model.train()
    items = items_for("smolvlm", 3)
    out = generate_answers(
        model,
        processor,
        "smolvlm",
        "json",
        items,
        batch_size=2,
        labels=LABELS,
        options=GenerationOptions(max_new_tokens=7),
    )
    assert model.training  # training mode restored
    model.eval()
    assert all(g.new_tokens <= 7 for g in out)
    # A random model never ends its answer: it is cut, says so, and is a parse failure.
    assert all(g.truncated and not g.parsed.ok for g in out)
    accumulator = MetricsAccumulator(LABELS)
    for (image, example), g in zip(items, out, strict=True):
        car = GroundTruthObject("car", (4.0, 6.0, 20.0, 12.0))
        truth = GroundTruth("x", "v", width=image.size[0], height=image.size[1], objects=(car,))
        label = None if example.task == "detect" else example.labels[0]
        accumulator.add(truth, example.task, g.parsed, label)
    assert accumulator.result().parse_failure_rate["all"] == 1.0


def test_without_a_limit_the_budget_follows_the_rule(loaded):
    model, processor = loaded("qwen2_vl")
    tokenizer = processor.tokenizer
    items = [item for item in items_for("qwen2_vl", 6) if item[1].task == "count"][:1]
    assert items
    budget = answer_token_budget(tokenizer, "qwen2_vl", LABELS, task="count")
    out = generate_answers(model, processor, "qwen2_vl", "qwen2_vl", items, labels=LABELS)
    assert out[0].new_tokens <= budget
    # The rule: room for 10 objects per label (detect: every label), 10 % and 4 tokens more.
    ten = render_answer(
        [AnswerObject("car", (123.4, 234.5, 654.3, 543.2))] * 10, "qwen2_vl", (1000, 1000)
    )
    assert answer_token_budget(tokenizer, "qwen2_vl", ["car"], task="ground") >= len(
        tokenizer(ten, add_special_tokens=False)["input_ids"]
    )
    detect = [answer_token_budget(tokenizer, "json", LABELS[:k], task="detect") for k in (1, 2)]
    ground = [answer_token_budget(tokenizer, "json", LABELS[:k], task="ground") for k in (1, 2)]
    assert detect[1] > detect[0] and ground[0] == ground[1]
    assert budget < answer_token_budget(tokenizer, "qwen2_vl", LABELS, task="ground")


def test_items_that_are_not_image_example_pairs_get_one_message(loaded):
    from sam2_finetune.errors import OptionsError

    model, processor = loaded("smolvlm")
    with pytest.raises(OptionsError, match=r"items\[0\].*\(PIL.Image, tasks.Example\)"):
        generate_answers(model, processor, "smolvlm", "json", ["a prompt"])


def test_sampling_and_beams_are_options_and_greedy_is_the_default(loaded):
    model, processor = loaded("smolvlm")
    items = items_for("smolvlm", 2)

    def run(**options):
        return generate_answers(
            model, processor, "smolvlm", "json", items, labels=LABELS,
            options=GenerationOptions(max_new_tokens=6, **options),
        )  # fmt: skip

    greedy = run()
    assert [g.text for g in run()] == [g.text for g in greedy]  # deterministic
    beams = run(num_beams=2)
    assert len(beams) == 2 and all(g.new_tokens <= 6 for g in beams)
    torch.manual_seed(0)
    sampled = run(do_sample=True, temperature=5.0, top_k=50, top_p=0.99)
    assert all(g.new_tokens <= 6 for g in sampled)
    assert [g.text for g in sampled] != [g.text for g in greedy]  # hot sampling wanders off
    with pytest.raises(ValueError, match="do_sample"):
        GenerationOptions(top_k=5)
