"""A tiny model that memorised some frames' answers, saved as an adapter export (for the
evaluate tests and the benchmark)."""

from __future__ import annotations

MEMORISE_STEPS = 150


def memorise(rows, labels, folder, *, tiny_dir, family="smolvlm", task_mix=None, seed=42):
    """Train a tiny model until it writes ``rows``' examples (drawn as evaluate draws them:
    ``task_mix`` one task each, ``seed``) back verbatim, and save it as an adapter export in
    ``folder`` (adapter, processor, sam2_finetune.json). LoRA plus a trained output head, as
    tests/train/test_memorise.py: the tiny random head caps every logit near 1.3 otherwise."""
    from memorising import fit, memorising_model, optimizer_for

    from sam2_finetune.models.record import InferenceRecord, write_record
    from sam2_finetune.tasks import ExampleOptions
    from sam2_finetune.train.collator import VisionLanguageCollator

    task_mix = task_mix or {"detect": 1.0}
    model, processor = memorising_model(tiny_dir, family)
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
    loss = fit(model, optimizer_for(model, 1e-2), batches, MEMORISE_STEPS)
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
    return loss
