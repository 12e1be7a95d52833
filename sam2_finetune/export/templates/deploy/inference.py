"""Ask an exported sam2-finetune model about an image; print the parsed detections as JSON.

    python deploy/inference.py IMAGE [IMAGE ...] [--model EXPORT_DIR] [--prompt TEXT]
        [--device cuda|cpu] [--max-new-tokens N]

It loads the export this file sits in (or ``--model``): a merged or full model directly, an
adapter on the base model its ``sam2_finetune.json`` names. It applies the image settings the
model was trained with (from that record), asks the training prompt (``deploy_config.yaml``)
greedily, and reads the answer back with sam2-finetune's parser for the model's answer format:
one JSON object per image, boxes as ``[x, y, width, height]`` in the image's pixels.

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


def apply_image_settings(processor, family, image):
    """The training run's resize limits (None: the saved processor's own, which are the same)."""
    from sam2_finetune.models.chat import set_pixel_limits
    from sam2_finetune.models.registry import get_family

    resolution = get_family(family).resolution
    if resolution == "pixels" and (image.min_pixels or image.max_pixels):
        set_pixel_limits(processor, image.min_pixels, image.max_pixels)
    if resolution == "longest_edge" and image.longest_edge:
        processor.image_processor.size = {"longest_edge": image.longest_edge}


def load(export: Path, device: str):
    """The model (eval mode, on ``device``), its processor and its record."""
    from sam2_finetune.models.loading import load_model, load_processor
    from sam2_finetune.models.record import read_record

    record = read_record(export)
    remote = record.trust_remote_code
    processor = load_processor(export, record.family, trust_remote_code=remote)
    apply_image_settings(processor, record.family, record.image)
    if (export / "adapter_config.json").is_file():
        from peft import PeftModel

        base = load_model(record.base_model, record.family, trust_remote_code=remote)
        model = PeftModel.from_pretrained(base, str(export))
    else:
        model = load_model(export, record.family, trust_remote_code=remote)
    return model.to(device).eval(), processor, record


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

    import torch
    from PIL import Image

    config_file = args.model / "deploy" / "deploy_config.yaml"
    config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else {}
    prompt = args.prompt or config.get("model", {}).get("prompt")
    if not prompt:
        print(
            "error: no --prompt and no deploy/deploy_config.yaml to take it from", file=sys.stderr
        )
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, processor, record = load(args.model, device)
    images = [Image.open(path).convert("RGB") for path in args.images]
    results = detections(model, processor, record, images, prompt, args.max_new_tokens)
    for path, result in zip(args.images, results, strict=True):
        print(json.dumps({"image": str(path), "prompt": prompt, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
