"""Evidence that training learns: a tiny model memorises four examples and, through the
evaluate stage's generation, writes their answers back verbatim (greedy)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from peft import LoraConfig, get_peft_model  # noqa: E402

from sam2_finetune.dataset import (  # noqa: E402
    category_names,
    load_canonical,
    row_image,
)
from sam2_finetune.evaluate.generate import generate_answers  # noqa: E402
from sam2_finetune.models.loading import load_model, load_processor  # noqa: E402
from sam2_finetune.models.registry import get_family  # noqa: E402
from sam2_finetune.tasks import ExampleOptions  # noqa: E402
from sam2_finetune.train.callbacks import GroundingMetricsCallback  # noqa: E402
from sam2_finetune.train.collator import VisionLanguageCollator  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"
STEPS = 100

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture(scope="module")
def rows(raw_dataset):
    out = raw_dataset
    dataset = load_canonical(out)
    return [dataset[i] for i in range(4)], category_names(dataset)


def test_lora_memorises_four_examples_verbatim(tiny_dirs, rows):
    rows, labels = rows
    family = "smolvlm"
    torch.manual_seed(0)
    model = load_model(str(tiny_dirs(family)), family)
    processor = load_processor(tiny_dirs(family), family)
    # LoRA on the LM's projections, with the output head trained too: the tiny model's random
    # head (hidden size 64, weights ~0.02) caps every logit near 1.3, so adapters alone move the
    # argmax but leave the loss near log(vocabulary), and 100 steps are not enough.
    config = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        target_modules=get_family(family).lora_target_modules,
        modules_to_save=["lm_head"],
    )
    model = get_peft_model(model, config)
    options = ExampleOptions(task_mix={"ground": 1}, negative_rate=0.0)
    collator = VisionLanguageCollator(
        processor=processor, family=family, answer_format="json", vocabulary=labels,
        options=options,
    )  # fmt: skip
    batch = collator(rows)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(STEPS):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert float(loss.detach()) < 0.1

    examples = [collator.example(row) for row in rows]
    items = [(row_image(row), example) for row, example in zip(rows, examples, strict=True)]
    generated = generate_answers(model, processor, family, "json", items, batch_size=4,
                                 labels=labels)  # fmt: skip
    assert [g.text for g in generated] == [e.answer for e in examples]
    assert all(g.parsed.ok and not g.truncated for g in generated)
    # The training callback scores the same answers: every box found.
    callback = GroundingMetricsCallback(
        rows, processor=processor, family=family, answer_format="json", labels=labels,
        options=options, seed=collator.seed,
    )  # fmt: skip
    values, samples = callback.scores(model)
    assert values["eval_map50"] == pytest.approx(1.0, abs=1e-6)
    assert values["eval_parse_failure_rate"] == 0.0
    assert math.isfinite(values["eval_mean_iou"]) and values["eval_mean_iou"] > 0.9
    assert samples and "predicted" in samples[0]
