"""Fixtures of the evaluate stage's tests: a canonical dataset with raw frames, a tiny run."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="session")
def street_dataset(tmp_path_factory):
    """The street scene with its raw frames, as a canonical dataset folder (no splits)."""
    from sam2_finetune.convert import ConvertOptions, convert

    out = tmp_path_factory.mktemp("street") / "hf"
    convert(
        ConvertOptions(
            exports=[SAMPLE / "street_scene.zip"],
            frames=[str(SAMPLE / "street_scene_frames")],
            to="hf",
            out=out,
        )
    )
    return out


@pytest.fixture(scope="session")
def tiny_run(street_dataset, tmp_path_factory):
    """A real run folder of `train` on the tiny SmolVLM: 2 steps, a checkpoint at each, best/,
    metrics.jsonl, sam2_finetune.json, data/split (train/validation/test)."""
    import torch

    from sam2_finetune.train.config import load_config
    from sam2_finetune.train.run import train

    run_dir = tmp_path_factory.mktemp("run") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(
            load_config(
                preset="quick_test",
                overrides=[
                    f"data.dataset={street_dataset}",
                    f"output.run_dir={run_dir}",
                    "output.loggers=[]",
                    "training.max_steps=2",
                    "training.eval_steps=1",
                    "training.save_steps=1",
                    "training.logging_steps=1",
                    "training.save_total_limit=2",
                    "training.eval_generation_samples=0",
                ],
            )
        )
    finally:
        torch.set_num_threads(threads)
    return run_dir


MEMORISE_STEPS = 150


def memorise(rows, labels, folder, *, tiny_dir, family="smolvlm", task_mix=None, seed=42):
    """Train a tiny model until it writes ``rows``' examples (drawn as evaluate draws them:
    ``task_mix`` one task each, ``seed``) back verbatim, and save it as an adapter export in
    ``folder`` (adapter, processor, sam2_finetune.json). LoRA plus a trained output head, as
    tests/train/test_memorise.py: the tiny random head caps every logit near 1.3 otherwise."""
    import torch
    from peft import LoraConfig, get_peft_model

    from sam2_finetune.models.loading import load_model, load_processor
    from sam2_finetune.models.record import InferenceRecord, write_record
    from sam2_finetune.models.registry import get_family
    from sam2_finetune.tasks import ExampleOptions
    from sam2_finetune.train.collator import VisionLanguageCollator

    task_mix = task_mix or {"detect": 1.0}
    torch.manual_seed(0)
    model = load_model(str(tiny_dir), family)
    processor = load_processor(tiny_dir, family)
    config = LoraConfig(
        r=16,
        lora_alpha=32,
        lora_dropout=0.0,
        target_modules=get_family(family).lora_target_modules,
        modules_to_save=["lm_head"],
    )
    model = get_peft_model(model, config)
    batches = []
    for task in task_mix:
        collator = VisionLanguageCollator(
            processor=processor,
            family=family,
            answer_format="json",
            vocabulary=labels,
            options=ExampleOptions(task_mix={task: 1.0}),
            seed=seed,
        )
        batches.append(collator(rows))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for step in range(MEMORISE_STEPS):
        loss = model(**batches[step % len(batches)]).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    record = InferenceRecord(
        family=family,
        base_model=str(tiny_dir),
        method="lora",
        answer_format="json",
        labels=list(labels),
        task_mix=dict(task_mix),
    )
    write_record(record, folder)
    return float(loss.detach())


@pytest.fixture(scope="session")
def split_dataset(street_dataset, tmp_path_factory):
    """The street scene split into train / validation / test (temporal blocks)."""
    import warnings

    from sam2_finetune.split import SplitOptions, split

    out = tmp_path_factory.mktemp("split") / "split"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one video: time blocks, said by a SplitWarning
        split(SplitOptions(dataset=street_dataset, out=out))
    return out


@pytest.fixture(scope="session")
def memorised(split_dataset, tiny_dirs, tmp_path_factory):
    """An adapter export of a tiny SmolVLM that memorised the detect answers of the test
    split's frames (what evaluate asks with tasks=[detect] and the default seed)."""
    import torch

    from sam2_finetune.dataset import category_names, load_canonical

    dataset = load_canonical(split_dataset)
    rows = [dataset["test"][i] for i in range(len(dataset["test"]))]
    folder = tmp_path_factory.mktemp("memorised") / "model"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loss = memorise(rows, category_names(dataset), folder, tiny_dir=tiny_dirs("smolvlm"))
    finally:
        torch.set_num_threads(threads)
    assert loss < 0.1, loss
    return folder
