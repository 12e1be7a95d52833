"""Ask an exported sam2-finetune model about an image; print the parsed detections as JSON.

    python deploy/inference.py IMAGE [IMAGE ...] [--model EXPORT_DIR] [--prompt TEXT]
        [--device cuda|cpu] [--max-new-tokens N]

It loads the export this file sits in (or ``--model``) with sam2-finetune's inference loader
(``evaluate.loading.load_for_inference``): a merged or full model directly, an adapter on the
base model its ``sam2_finetune.json`` names, with the image settings the model was trained with
(from that record). It asks the training prompt (``deploy_config.yaml``) greedily and reads the
answer back with sam2-finetune's parser for the model's answer format: one JSON object per
image, boxes as ``[x, y, width, height]`` in the image's pixels.

Needs ``pip install sam2-finetune`` (the parser, the prompt layout and the loaders) and the
transformers / peft / torch versions in ``deploy_config.yaml``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def load(export: Path, device: str | None = None):
    """The model (eval mode, on ``device``: CUDA when present), its processor with the training
    run's image settings applied, and its record: sam2-finetune's one inference loader."""
    from sam2_finetune.evaluate.loading import load_for_inference

    loaded = load_for_inference(export, device=device)
    return loaded.model, loaded.processor, loaded.record


def detections(model, processor, record, images, prompt, max_new_tokens=None):
    """One dict per image: the answer text and the objects parsed from it."""
    from sam2_finetune.evaluate.generate import GenerationOptions, generate_answers
    from sam2_finetune.tasks import Example

    example = Example(
        task="detect", prompt=prompt, answer="", labels=tuple(record.labels), objects=()
    )
    generated = generate_answers(
        model,
        processor,
        record.family,
        record.answer_format,
        [(image, example) for image in images],
        batch_size=1,
        labels=record.labels,
        options=GenerationOptions(max_new_tokens=max_new_tokens),
        max_polygon_points=record.max_polygon_points,
    )
    return [
        {
            "answer": g.text,
            "parsed": g.parsed.ok,
            "problems": g.parsed.problems,
            "objects": [
                {
                    "label": o.label,
                    "bbox_xywh": [round(v, 2) for v in o.bbox],
                    "polygons": o.polygons,
                }
                for o in g.parsed.objects
            ],
        }
        for g in generated
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", type=Path, help="Images to ask about.")
    parser.add_argument("--model", type=Path, default=HERE.parent, help="The export folder.")
    parser.add_argument("--prompt", help="Prompt (default: the training prompt in the config).")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if any).")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    args = parser.parse_args(argv)

    from PIL import Image

    config_file = args.model / "deploy" / "deploy_config.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    prompt = args.prompt or config.get("model", {}).get("prompt")
    if not prompt:
        print(
            "error: no --prompt and no deploy/deploy_config.yaml to take it from", file=sys.stderr
        )
        return 2
    model, processor, record = load(args.model, args.device)
    images = [Image.open(path).convert("RGB") for path in args.images]
    results = detections(model, processor, record, images, prompt, args.max_new_tokens)
    for path, result in zip(args.images, results, strict=True):
        print(json.dumps({"image": str(path), "prompt": prompt, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
