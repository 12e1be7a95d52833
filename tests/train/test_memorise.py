"""Evidence that training learns: a tiny model memorises four examples and, through the
evaluate stage's generation, writes their answers back verbatim (greedy)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from memorising import fit, memorising_model, optimizer_for  # noqa: E402  (tests/ is on sys.path)

from sam2_finetune.dataset import (  # noqa: E402
    category_names,
    load_canonical,
    row_image,
)
from sam2_finetune.evaluate.generate import generate_answers  # noqa: E402
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
    # LoRA with the output head trained too (tests/memorising.py says why).
    model, processor = memorising_model(tiny_dirs(family), family)
    options = ExampleOptions(task_mix={"ground": 1}, negative_rate=0.0)
    collator = VisionLanguageCollator(
        processor=processor, family=family, answer_format="json", vocabulary=labels,
        options=options,
    )  # fmt: skip
    batch = collator(rows)
    loss = fit(model, optimizer_for(model, 1e-2), [batch], STEPS)
    assert loss < 0.1

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
