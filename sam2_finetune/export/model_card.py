"""The export's model card (``README.md``): ``huggingface_hub.ModelCard`` from a template file.

The template (``templates/model_card.md``, shipped in the package) holds the layout; this module
gathers the facts, all read from files, never from memory of the run:

- the run's ``config.yaml`` (resolved config), ``summary.json`` (steps, loss, device, versions),
  ``data_manifest.json`` (source, splits, labels, overlay frames) and the split folder's
  ``split_manifest.json`` (videos, strategy, ratios, leakage verdict, warnings);
- the record (``sam2_finetune.json``): family, base model, answer format, image settings;
- an evaluate output folder's ``metrics.json`` (contract 3) when given: the metrics table with
  the prior and empty baselines, and the YAML ``model-index``.

What is not recorded is said to be unknown, not guessed (a run does not record a validation
verdict of its data today: the card says so). :func:`check_card` runs huggingface_hub's own
metadata parsing on the written card (the Hub's server-side check needs the network).
"""

from __future__ import annotations

import json
import math
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from sam2_finetune.errors import OptionsError, describe
from sam2_finetune.export.adapter import Checkpoint
from sam2_finetune.files import read_json
from sam2_finetune.models.record import InferenceRecord
from sam2_finetune.models.registry import get_family

TEMPLATE = "model_card.md"
CARD_NAME = "README.md"
METRICS_NAME = "metrics.json"
# Summary metrics shown in the table and the model-index, in order (sam2_finetune.metrics).
CARD_METRICS: dict[str, str] = {
    "map": "mAP@[.5:.95]",
    "map50": "mAP@.5",
    "map75": "mAP@.75",
    "ar100": "AR@100",
    "mean_iou": "mean IoU",
    "parse_failure_rate": "parse failure rate",
    "mask_iou": "mask IoU",
    "mask_dice": "mask Dice",
    "count_accuracy": "count accuracy",
    "count_mae": "count MAE",
}
_KIND_TEXT = {
    "adapter": "LoRA adapter (load it on the base model with peft)",
    "merged": "adapters merged into the base weights (plain transformers model)",
    "full": "full fine-tune (plain transformers model)",
}


def template_path() -> Path:
    """The card template shipped in the package."""
    return Path(str(files("sam2_finetune.export") / "templates" / TEMPLATE))


def read_evaluation(folder: Path) -> dict[str, Any]:
    """``folder/metrics.json`` as ``sam2-finetune evaluate`` writes it (one clear error if not)."""
    path = folder / METRICS_NAME if folder.is_dir() else folder
    if not path.is_file():
        raise OptionsError(
            describe(
                "no metrics.json in the evaluation folder",
                file=path,
                field="--evaluation",
                fix="pass the --out folder of `sam2-finetune evaluate`, or leave --evaluation out",
            )
        )
    data = read_json(path, "evaluation metrics")
    if not isinstance(data.get("metrics"), dict):
        raise OptionsError(
            describe(
                "not an evaluate metrics.json: it has no metrics table",
                file=path,
                field="metrics",
                fix="pass the metrics.json written by `sam2-finetune evaluate`",
            )
        )
    return data


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _read_optional(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_hub_id(name: str) -> bool:
    """Whether ``name`` reads as a Hub repository id (``owner/name``, not a folder)."""
    parts = name.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not name.startswith((".", "~", "/"))
        and not Path(name).exists()
    )


def _data_text(manifest: dict | None, split: dict | None) -> str:
    if manifest is None:
        return "Not recorded: the run folder has no `data_manifest.json`."
    lines = [f"- Source: `{manifest.get('source', 'unknown')}` ({manifest.get('how', '')})."]
    splits = manifest.get("splits") or {}
    lines.append(
        "- Frames used: " + ", ".join(f"{k} {v}" for k, v in splits.items()) + "."
        if splits
        else "- Frames used: not recorded."
    )
    lines.append(f"- Labels: {', '.join(manifest.get('labels') or []) or 'none recorded'}.")
    overlays = manifest.get("overlay_frames") or {}
    total = sum(int(v) for v in overlays.values())
    images = (
        "raw video frames (no overlays)"
        if total == 0
        else f"{total} overlay frames (masks drawn in the image) out of "
        f"{sum(splits.values())}; training on overlays was allowed (allow_overlays)"
    )
    lines.append(f"- Images: {images}.")
    if split is not None:
        source = split.get("source") or {}
        videos = sorted(
            {v for part in (split.get("splits") or {}).values() for v in part["videos"]}
        )
        lines.append(
            f"- Videos: {source.get('videos', len(videos))} ({', '.join(videos)}); "
            f"{source.get('frames', '?')} annotated frames before splitting."
        )
        ratios = split.get("ratios") or {}
        sizes = {k: v.get("frames") for k, v in (split.get("splits") or {}).items()}
        lines.append(
            f"- Split: {split.get('strategy', '?')} (seed {split.get('seed')}), ratios "
            + ", ".join(f"{k} {v}" for k, v in ratios.items())
            + "; frames "
            + ", ".join(f"{k} {v}" for k, v in sizes.items())
            + "."
        )
        leakage = split.get("leakage") or {}
        if leakage:
            verdict = "no leakage found" if leakage.get("ok") else "LEAKAGE found"
            lines.append(
                f"- Leakage check: {verdict} ({leakage.get('near_pairs', 0)} near pairs, "
                f"{leakage.get('identical_images', 0)} identical images across splits)."
            )
        for warning in split.get("warnings") or []:
            lines.append(f"- Split warning: {warning}")
    else:
        lines.append("- Split: not recorded (the run's split folder has no split_manifest.json).")
    lines.append(
        "- Data validation (`sam2-finetune validate`): the run does not record a validation "
        "verdict, so none is reported here; run `sam2-finetune validate` on the exports to see it."
    )
    return "\n".join(lines)


def _training_text(record: InferenceRecord, config: dict | None, summary: dict | None) -> str:
    if summary is None:
        return "Not recorded: the run folder has no `summary.json` (did the run finish?)."
    training = (config or {}).get("training") or {}
    model = (config or {}).get("model") or {}
    lines = [
        f"- Steps: {summary.get('global_step')}, stopped by {summary.get('stopped')} "
        f"({summary.get('seconds')} s on {summary.get('device')}, {summary.get('processes')} "
        f"process(es), {summary.get('precision')}).",
        f"- Final training loss: {summary.get('train_loss')}.",
    ]
    if summary.get("best_metric") is not None:
        lines.append(
            f"- Best {summary.get('metric_for_best_model')}: {summary.get('best_metric')} at "
            f"step {summary.get('best_step')}."
        )
    if record.method == "lora":
        lines.append(
            f"- LoRA rank {model.get('lora_rank')}, alpha {model.get('lora_alpha')}, dropout "
            f"{model.get('lora_dropout')}, targets `{model.get('lora_targets')}`."
        )
    lines.append(
        f"- Learning rate {training.get('learning_rate')} ({training.get('lr_scheduler')}), "
        f"batch {training.get('batch_size')} x {training.get('gradient_accumulation_steps')} "
        f"accumulation, optimizer {training.get('optimizer')}."
    )
    lines.append(
        f"- Trainable parameters: {summary.get('trainable_parameters')} of "
        f"{summary.get('total_parameters')}."
    )
    return "\n".join(lines)


def _evaluation(evaluation: dict | None) -> str:
    if evaluation is None:
        return (
            "Not evaluated in this export. Run `sam2-finetune evaluate --model EXPORT --data "
            "SPLIT_DIR --out EVAL_DIR`, then export again with `--evaluation EVAL_DIR` to put "
            "the metrics here."
        )
    metrics = evaluation["metrics"]
    baselines = evaluation.get("baselines") or {}
    names = [n for n in CARD_METRICS if n in metrics]
    header = "| Metric | This model | " + " | ".join(f"{b} baseline" for b in baselines) + " |"
    rule = "|---|---|" + "---|" * len(baselines)
    rows = []
    for name in names:
        cells = [_shown(metrics.get(name))] + [_shown(b.get(name)) for b in baselines.values()]
        rows.append(f"| {CARD_METRICS[name]} | " + " | ".join(cells) + " |")
    per_label = [n for n in metrics if n.startswith("map/")]
    for name in per_label:
        cells = [_shown(metrics.get(name))] + [_shown(b.get(name)) for b in baselines.values()]
        rows.append(f"| mAP {name.removeprefix('map/')} | " + " | ".join(cells) + " |")
    text = [
        f"On `{evaluation.get('data', '?')}` (split {evaluation.get('split', '?')}, "
        f"{evaluation.get('examples', '?')} examples), model `{evaluation.get('model', '?')}`. "
        "The baselines: *prior* answers every frame with the training set's typical boxes, "
        "*empty* answers nothing; a model that does not beat them has not learnt the task.",
        "",
        header,
        rule,
        *rows,
    ]
    below = evaluation.get("below_baselines") or []
    if below:
        text += ["", f"**Below a baseline:** {', '.join(below)}."]
    unknown = evaluation.get("unknown_labels") or {}
    if unknown:
        text += [
            "",
            "Labels the model wrote that it was not trained on: "
            + ", ".join(f"{k} ({v})" for k, v in unknown.items())
            + ".",
        ]
    return "\n".join(text)


def _shown(value: Any) -> str:
    number = _number(value)
    return "n/a" if number is None else f"{number:.4f}"


def eval_results(evaluation: dict | None, model_name: str) -> list[Any]:
    """The model-index entries (huggingface_hub ``EvalResult``) of the evaluation's metrics."""
    from huggingface_hub import EvalResult

    if evaluation is None:
        return []
    found = []
    for name, title in CARD_METRICS.items():
        value = _number(evaluation["metrics"].get(name))
        if value is None:
            continue
        found.append(
            EvalResult(
                task_type="object-detection",
                task_name="Grounded object detection",
                dataset_type="sam2-annotations",
                dataset_name=str(evaluation.get("data") or "SAM2 annotations"),
                dataset_split=str(evaluation.get("split") or "test"),
                metric_type=name,
                metric_name=title,
                metric_value=round(value, 6),
            )
        )
    return found


def card_data(record: InferenceRecord, kind: str, evaluation: dict | None, model_name: str) -> Any:
    """The card's YAML metadata as huggingface_hub's ``ModelCardData``."""
    from huggingface_hub import ModelCardData

    tags = ["sam2-finetune", "vision-language", "object-detection", record.family]
    if record.method == "lora":
        tags.append("qlora" if record.quantization != "none" else "lora")
    else:
        tags.append("full-fine-tune")
    results = eval_results(evaluation, model_name)
    return ModelCardData(
        base_model=record.base_model if is_hub_id(record.base_model) else None,
        library_name="peft" if kind == "adapter" else "transformers",
        pipeline_tag="image-text-to-text",
        tags=tags,
        model_name=model_name,
        eval_results=results or None,
        metrics=[r.metric_type for r in results] or None,
        ignore_metadata_errors=False,
    )


def _usage(record: InferenceRecord, kind: str, model_ref: str, base_ref: str, prompt: str) -> str:
    row = get_family(record.family)
    lines = [
        "import torch",
        "from PIL import Image",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "",
        f'MODEL = "{model_ref}"',
        'IMAGE = "frame.jpg"',
        f"PROMPT = {prompt!r}",
        "",
    ]
    loader, remote = "AutoModelForImageTextToText", ""
    if row.trust_remote_code:
        # Remote-code families (MiniCPM-V, CogVLM) load through their own classes.
        loader, remote = row.model_class, ", trust_remote_code=True"
        lines[2] = f"from transformers import {loader}, AutoProcessor"
    if kind == "adapter":
        lines[2:2] = ["from peft import PeftModel"]
        lines += [
            f'base = {loader}.from_pretrained("{base_ref}"{remote})',
            "model = PeftModel.from_pretrained(base, MODEL).eval()",
        ]
    else:
        lines.append(f"model = {loader}.from_pretrained(MODEL{remote}).eval()")
    lines.append(f"processor = AutoProcessor.from_pretrained(MODEL{remote})")
    lines.append('image = Image.open(IMAGE).convert("RGB")')
    if row.prompt_style == "prefix_suffix":
        lines.append(f'text = "{row.image_placeholder}" + PROMPT')
    else:
        lines += [
            'turn = {"role": "user", "content": [{"type": "image"}, '
            '{"type": "text", "text": PROMPT}]}',
            "text = processor.apply_chat_template([turn], add_generation_prompt=True)",
        ]
    lines += [
        'inputs = processor(text=[text], images=[[image]], return_tensors="pt")',
        "with torch.no_grad():",
        "    ids = model.generate(**inputs, max_new_tokens=512, do_sample=False)",
        'answer = processor.decode(ids[0, inputs["input_ids"].shape[1]:], '
        f"skip_special_tokens={record.family != 'qwen2_vl'})",
        "print(answer)",
    ]
    return "\n".join(lines)


def format_text(answer_format: str, labels: list[str]) -> str:
    """How a client reads answers of ``answer_format``: the coordinates, an example answer for
    a 640x480 image, and the parser to use."""
    from sam2_finetune.answer_formats import AnswerObject, get_format, render_answer

    spec = get_format(answer_format)
    label = labels[0] if labels else "object"
    example = render_answer(
        [AnswerObject(label, (64.0, 48.0, 128.0, 96.0))],
        answer_format,
        (640, 480),
        resized_wh=(644, 476) if spec.needs_resized_wh else None,
    )
    resized = ", resized_wh=(W, H) of the processor's resize" if spec.needs_resized_wh else ""
    return (
        f"coordinates are {spec.coordinates}. A {label} at x 64-192, y 48-144 of a 640x480 "
        f"image reads `{example}`; no object reads `{spec.empty_answer}`. Read it back into "
        f"image pixels with `sam2_finetune.answer_formats.parse_answer(answer, "
        f'"{answer_format}", (width, height){resized})`.'
    )


def build_card(
    *,
    run: Path,
    checkpoint: Checkpoint,
    record: InferenceRecord,
    kind: str,
    model_ref: str,
    base_ref: str,
    prompt: str,
    evaluation: dict | None,
) -> Any:
    """The model card (``huggingface_hub.ModelCard``) of an export of ``checkpoint``.

    ``model_ref`` is how the usage snippet names the model (the Hub repository or the export
    folder); ``base_ref`` how it names the base model (for adapters); ``prompt`` the training
    prompt it asks.
    """
    from huggingface_hub import ModelCard

    run_dir = run if (run / "config.yaml").is_file() else checkpoint.folder.parent
    config_file = run_dir / "config.yaml"
    config_yaml = config_file.read_text(encoding="utf-8") if config_file.is_file() else ""
    config = yaml.safe_load(config_yaml) if config_yaml else None
    summary = _read_optional(run_dir / "summary.json")
    manifest = _read_optional(run_dir / "data_manifest.json")
    split = None
    if manifest and manifest.get("split_folder"):
        split = _read_optional(Path(manifest["split_folder"]) / "split_manifest.json")
    row = get_family(record.family)
    model_name = Path(model_ref).name
    quantised = record.method == "lora" and record.quantization != "none"
    note = None
    if quantised and kind == "merged":
        note = (
            f"Trained with QLoRA on a {record.quantization} base; merged into the base reloaded "
            "unquantised. The merged weights differ from the model evaluated during training by "
            "the quantisation error of the base: evaluate the merged model before relying on it."
        )
    elif quantised:
        note = (
            f"Trained with QLoRA: load the base in {record.quantization} (bitsandbytes) to "
            "reproduce the model as trained, or in full precision (slightly different answers)."
        )
    method = "LoRA" if record.method == "lora" else "full fine-tune"
    if quantised:
        method = f"QLoRA ({record.quantization} base)"
    step = f"step {checkpoint.step}" if checkpoint.step is not None else "step unknown"
    image = record.image.model_dump()
    rows = [(name, "processor default" if v is None else v) for name, v in image.items()]
    rows += [
        ("answer format", f"`{record.answer_format}`"),
        ("max polygon points", record.max_polygon_points),
        ("prompts", "one phrasing per task" if record.fixed_prompts else "varied phrasings"),
        ("task mix", ", ".join(f"{k} {v:g}" for k, v in record.task_mix.items()) or "-"),
    ]
    rows += [(f"{name} version", v) for name, v in record.versions.items()]
    limitations = [
        f"Trained on {', '.join(record.labels) or 'no labels'} only: it does not know other "
        "classes and may name one of these instead.",
        "Trained on frames of a few annotated videos: expect it to do worse on other cameras, "
        "scenes and lighting; evaluate on your own held-out video before use.",
        "Answers are generated text: a malformed answer is possible (the evaluate stage counts "
        "them as parse failures).",
        "Use the image settings above: other resize limits shift every coordinate.",
    ]
    if record.versions.get("transformers"):
        limitations.append(
            f"Saved with transformers {record.versions['transformers']}; weight and adapter "
            "names have changed across major versions, so load it with the same major version."
        )
    if record.base_model.startswith("tiny:"):
        limitations.insert(
            0,
            "The base is a tiny random test model (`tiny:`): this export shows the plumbing, "
            "its answers are noise.",
        )
    usage_intro = (
        "Load the base model and put the adapter on it:"
        if kind == "adapter"
        else "Plain transformers, nothing of sam2-finetune needed:"
    )
    return ModelCard.from_template(
        card_data(record, kind, evaluation, model_name),
        template_path=str(template_path()),
        title=f"{row.title} fine-tuned on SAM2 annotations ({model_name})",
        summary=(
            f"A {row.title} model fine-tuned with sam2-finetune to find and outline "
            f"{', '.join(record.labels) or 'objects'} in video frames annotated with SAM2."
        ),
        family_title=row.title,
        record=record,
        kind_text=_KIND_TEXT[kind],
        method_text=method,
        checkpoint_text=f"`{checkpoint.folder.name}` ({step}) of run `{run_dir.name}`",
        labels_text=", ".join(record.labels) or "none",
        quantization_note=note,
        data_text=_data_text(manifest, split),
        training_text=_training_text(record, config, summary),
        config_yaml=config_yaml.strip() or "# not recorded (no config.yaml in the run folder)",
        evaluation_text=_evaluation(evaluation),
        inference_rows=rows,
        usage_intro=usage_intro,
        usage_code=_usage(record, kind, model_ref, base_ref, prompt),
        format_text=format_text(record.answer_format, record.labels),
        limitations=limitations,
    )


def check_card(text: str) -> Any:
    """Parse ``text`` with huggingface_hub's own metadata checks (the YAML block, the
    model-index against ``EvalResult``); the parsed card. Raises ``ValueError`` when it does
    not pass."""
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import eval_results_to_model_index

    card = ModelCard(text, ignore_metadata_errors=False)
    data = card.data
    if not data.pipeline_tag or not data.library_name:
        raise ValueError("the model card has no pipeline_tag or library_name")
    if data.eval_results:
        eval_results_to_model_index(data.model_name, data.eval_results)
    return card
