"""Stage 7, export: a run's model as a folder another machine can load, with its card.

``export(ExportOptions) -> ExportResult`` (``sam2-finetune export RUN_DIR --out DIR``), top to
bottom: pick the checkpoint and check it (:mod:`~sam2_finetune.export.adapter`), write the
adapter or the full weights, or merge the adapters into the base
(:mod:`~sam2_finetune.export.merge`), save the processor so that plain ``AutoProcessor`` loads
it, write ``sam2_finetune.json`` (the record, ``merged`` set), the model card
(:mod:`~sam2_finetune.export.model_card`) and ``deploy/`` (:mod:`~sam2_finetune.export.deploy`);
all into a temporary folder renamed into place at the end; then, if asked, upload it.

The export folder::

    adapter_config.json + adapter_model.safetensors   (adapter export)
    config.json + model.safetensors + generation_config.json   (merged or full)
    processor / tokenizer / chat template files
    sam2_finetune.json   what inference must reproduce (family, base, format, image settings)
    README.md            the model card
    deploy/              inference.py, deploy_config.yaml, Dockerfile, README.md
"""

from __future__ import annotations

from pathlib import Path

from sam2_finetune.errors import OptionsError, describe
from sam2_finetune.export.adapter import (
    Checkpoint,
    ExportSourceError,
    check_source,
    copy_remote_code,
    copy_weights,
    find_checkpoint,
    load_checkpoint_processor,
    save_processor,
)
from sam2_finetune.export.options import ExportKind, ExportOptions, ExportResult
from sam2_finetune.models.record import InferenceRecord, library_versions, write_record
from sam2_finetune.outputs import atomic_output_dir, ensure_writable

__all__ = [
    "ExportOptions",
    "ExportResult",
    "ExportSourceError",
    "detect_prompt",
    "export",
    "export_command",
    "push_to_hub",
]


def detect_prompt(record: InferenceRecord) -> str:
    """The prompt the model was trained with for finding every object, as ``predict`` asks it
    (the ``detect`` task in the record's answer format and phrasing, naming its labels where the
    format does): what the card's code, ``inference.py`` and ``deploy_config.yaml`` send."""
    from sam2_finetune.evaluate.predict import prediction_example

    example = prediction_example(
        record.answer_format,
        "detect",
        None,
        record.labels,
        (640, 480),
        resized_wh=(640, 480),
        fixed_prompt=record.fixed_prompts,
    )
    return example.prompt


def _kind(checkpoint: Checkpoint, merge: bool) -> ExportKind:
    if not checkpoint.is_adapter:
        return "full"
    return "merged" if merge else "adapter"


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def export(options: ExportOptions) -> ExportResult:
    """Export the model of ``options.run`` to ``options.out`` (see the module).

    >>> result = export(ExportOptions(run="runs/quick_test", out="exports/quick", merge=True))
    ... # doctest: +SKIP
    >>> result.kind, result.out_dir  # doctest: +SKIP
    ('merged', PosixPath('exports/quick'))
    """
    from sam2_finetune.export.deploy import write_deploy
    from sam2_finetune.export.model_card import (
        CARD_NAME,
        build_card,
        check_card,
        format_text,
        read_evaluation,
    )
    from sam2_finetune.models.tiny import resolve_checkpoint

    out = Path(options.out)
    ensure_writable(out, options.overwrite)  # before any model is loaded
    checkpoint = find_checkpoint(options.run, options.checkpoint)
    if out.resolve() in (Path(options.run).resolve(), checkpoint.folder.resolve()):
        raise OptionsError(
            describe(
                "the export would replace the run it exports",
                file=out,
                field="--out",
                fix="choose an output folder outside the run folder",
            )
        )
    check_source(checkpoint)
    evaluation = read_evaluation(options.evaluation) if options.evaluation else None
    kind = _kind(checkpoint, options.merge)
    # Versions of the libraries that wrote the weights: training's for an adapter or a full
    # fine-tune (copied as saved), this process's for merged weights (saved here).
    record = checkpoint.record.model_copy(update={"merged": kind == "merged"})
    if kind == "merged":
        record.versions = library_versions()
    processor = load_checkpoint_processor(checkpoint)
    prompt = detect_prompt(record)
    base_ref = record.base_model
    if base_ref.startswith("tiny:"):
        base_ref = resolve_checkpoint(base_ref)
    model_name = options.push_to_hub.split("/")[-1] if options.push_to_hub else out.name
    model_ref = options.push_to_hub or str(out.resolve())
    merge_seconds = None
    with atomic_output_dir(out, overwrite=options.overwrite) as tmp:
        if kind == "merged":
            from sam2_finetune.export.merge import merged_model, save_model

            model, merge_seconds = merged_model(checkpoint)
            save_model(model, tmp)
            del model
        else:
            copy_weights(checkpoint, tmp)
        base_folder = base_ref if Path(base_ref).is_dir() else None
        save_processor(processor, tmp, base_folder)
        if kind != "adapter" and record.trust_remote_code and base_folder:
            copy_remote_code(Path(base_folder), tmp)
        write_record(record, tmp)
        card = build_card(
            run=Path(options.run),
            checkpoint=checkpoint,
            record=record,
            kind=kind,
            model_ref=model_ref,
            base_ref=base_ref,
            prompt=prompt,
            evaluation=evaluation,
        )
        text = str(card)
        check_card(text)
        (tmp / CARD_NAME).write_text(text, encoding="utf-8")
        write_deploy(
            tmp,
            record,
            kind,
            model_name=model_name,
            prompt=prompt,
            format_text=format_text(record.answer_format, record.labels),
        )
    result = ExportResult(
        out_dir=out,
        kind=kind,
        source=checkpoint.folder,
        step=checkpoint.step,
        family=record.family,
        base_model=record.base_model,
        size_bytes=_folder_size(out),
        files=sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()),
        merge_seconds=merge_seconds,
    )
    if options.push_to_hub:
        result.hub_url = push_to_hub(out, options.push_to_hub, private=options.private)
    return result


def push_to_hub(folder: Path, repo_id: str, *, private: bool = True) -> str:
    """Upload ``folder`` to the Hub model repository ``repo_id`` (created, private by default,
    if it does not exist); the repository's URL. Needs a token (``hf auth login`` or
    ``HF_TOKEN``) and the network."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi()
    try:
        url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            repo_type="model",
            folder_path=str(folder),
            commit_message="Upload sam2-finetune export",
        )
    except (HfHubHTTPError, OSError, ValueError) as error:
        raise OptionsError(
            describe(
                f"the upload to the Hub failed: {str(error).splitlines()[0]}",
                file=folder,
                field="--push-to-hub",
                found=repo_id,
                fix="check the network and your token (`hf auth login` or HF_TOKEN, with write "
                "access to the repository); the export itself is complete, upload it again with "
                "`hf upload REPO FOLDER`",
            )
        ) from None
    return str(url)


def format_result(result: ExportResult) -> str:
    """What a user reads after ``sam2-finetune export``."""
    step = f"step {result.step}" if result.step is not None else "step unknown"
    lines = [
        f"export     {result.out_dir} ({result.kind}, {result.size_bytes / 2**20:.1f} MiB)",
        f"from       {result.source} ({step}), base {result.base_model}",
        f"card       {result.out_dir / 'README.md'}",
        f"inference  python {result.out_dir / 'deploy' / 'inference.py'} IMAGE",
    ]
    if result.hub_url:
        lines.append(f"hub        {result.hub_url}")
    return "\n".join(lines)


def export_command(options: ExportOptions) -> int:
    """``sam2-finetune export RUN_DIR --out DIR``."""
    print(format_result(export(options)))
    return 0
