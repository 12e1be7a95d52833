"""A tiny model that memorised some frames' answers, saved as an adapter export (for the
evaluate tests and the benchmark)."""

from __future__ import annotations

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
