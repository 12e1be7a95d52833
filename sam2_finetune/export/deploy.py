"""``deploy/`` in an export: an inference script, ``deploy_config.yaml``, a Dockerfile, and how
to serve the model with an OpenAI-compatible server.

- ``inference.py`` (copied from ``templates/deploy/``): loads the export, asks the training
  prompt, prints parsed detections as JSON lines.
- ``deploy_config.yaml``: the prompt, the image settings, the library versions, the GPU memory
  inference needs (:func:`inference_memory`, from the registry's architecture numbers through
  :func:`sam2_finetune.models.memory.estimate_memory`: an estimate, not a measurement), and the
  environment variables the image sets.
- ``Dockerfile``: a minimal GPU image (not built here: no GPU, no Docker in CI).
- ``README.md``: the commands, the vLLM serving command where vLLM runs the family
  (:data:`VLLM_SUPPORT`), and the answer format a client must parse.
"""

from __future__ import annotations

import shutil
import string
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from sam2_finetune.models.record import InferenceRecord
from sam2_finetune.models.registry import CHECKPOINT_FAMILY, get_checkpoint, get_family

DEPLOY_DIR = "deploy"
CONFIG_NAME = "deploy_config.yaml"
# Families vLLM's OpenAI-compatible server runs (its supported multimodal models list), and
# what to know. PaliGemma runs in vLLM but has no chat template, which the chat API needs.
# CogVLM's remote code has no vLLM implementation.
VLLM_SUPPORT: dict[str, tuple[bool, str]] = {
    "llava": (True, ""),
    "qwen2_vl": (True, ""),
    "qwen2_5_vl": (True, ""),
    "idefics3": (True, ""),
    "smolvlm": (True, ""),
    "gemma3": (True, ""),
    "minicpm_v": (True, "needs --trust-remote-code"),
    "paligemma": (
        False,
        "vLLM runs PaliGemma, but it has no chat template, which the OpenAI chat API needs; "
        "use vLLM's offline `LLM.generate` with the prompt `<image>` + prompt, or inference.py",
    ),
    "cogvlm": (False, "vLLM has no CogVLM implementation; use inference.py"),
}
# What inference.py and the image install, besides the versions the model was saved with.
_PACKAGES = ("torch", "transformers", "peft", "accelerate")
# Tokens of one example beyond the image: the prompt and a long answer.
_TEXT_TOKENS = 1024
_IMAGE_WH = (1280, 720)


def _template(name: str) -> Path:
    return Path(str(files("sam2_finetune.export") / "templates" / DEPLOY_DIR / name))


def requirements(record: InferenceRecord, kind: str) -> str:
    """The pip arguments for inference: the versions the model was saved with (a local torch
    build suffix dropped) and sam2-finetune (the parser)."""
    pins = []
    for name in _PACKAGES:
        if name == "peft" and kind != "adapter":
            continue
        version = record.versions.get(name)
        pins.append(f'"{name}=={version.split("+")[0]}"' if version else name)
    ours = record.versions.get("sam2-finetune")
    pins.append(f'"sam2-finetune=={ours}"' if ours else "sam2-finetune")
    pins += ["pillow", "pyyaml"]
    return " ".join(pins)


def inference_memory(record: InferenceRecord) -> dict[str, Any]:
    """GPU memory to run the model for one image at a time in bf16, from the registry's
    architecture numbers: weights + one layer's activations + logits + overhead (the training
    estimate without gradients, optimizer state and adapters). An estimate, not a measurement.
    """
    from sam2_finetune.models.memory import estimate_memory
    from sam2_finetune.models.registry import image_tokens

    family = get_family(record.family)
    if record.base_model in CHECKPOINT_FAMILY:
        checkpoint = get_checkpoint(record.base_model)
        basis = f"the registry's numbers for {checkpoint.name}"
    else:
        checkpoint = family.default_checkpoint
        basis = (
            f"the registry's numbers for {checkpoint.name}, the family's default checkpoint "
            f"(the base {record.base_model!r} is not in the registry; scale by its size)"
        )
    image = record.image
    tokens = image_tokens(
        checkpoint.image,
        *_IMAGE_WH,
        min_pixels=image.min_pixels,
        max_pixels=image.max_pixels,
        longest_edge=image.longest_edge,
        max_slices=image.max_slices,
    )
    estimate = estimate_memory(
        checkpoint.architecture,
        quantization="none",
        lora_rank=1,
        batch_size=1,
        seq_len=_TEXT_TOKENS,
        image_tokens=tokens,
        gradient_checkpointing=True,
        optimizer="sgd",
        precision="bf16",
    )
    total = estimate.weights + estimate.activations + estimate.logits + estimate.overhead
    gib = total / 2**30
    return {
        "gpu_memory_gib": round(gib, 1),
        "weights_gib": round(estimate.weights / 2**30, 2),
        "suggested_gpu": _gpu_for(gib),
        "assumes": f"bf16, batch 1, a {_IMAGE_WH[0]}x{_IMAGE_WH[1]} image ({tokens} image "
        f"tokens) + {_TEXT_TOKENS} text tokens",
        "basis": basis + "; an estimate, not a measurement",
    }


def _gpu_for(gib: float) -> str:
    for size, example in ((16, "T4 / RTX 4080"), (24, "L4 / A10 / RTX 4090"), (48, "L40S / A6000")):
        if gib * 1.1 <= size:
            return f"{size} GB or more ({example})"
    return "80 GB (A100 / H100), or two GPUs with device_map=auto"


def serving_text(record: InferenceRecord, kind: str, model_name: str) -> str:
    """The vLLM command and a client call, or why vLLM does not apply."""
    supported, note = VLLM_SUPPORT.get(record.family, (False, "not checked for this family"))
    if not supported:
        return f"Not with vLLM: {note}."
    remote = " --trust-remote-code" if record.trust_remote_code else ""
    if kind == "adapter":
        serve = (
            f"vllm serve {record.base_model} --enable-lora --lora-modules {model_name}=.{remote} "
            "\\\n    --limit-mm-per-prompt '{\"image\": 1}' --max-model-len 8192\n"
        )
        caveat = (
            "LoRA on multimodal models depends on the vLLM version and may not cover adapters "
            "on the vision tower or projector: export with `--merge` and serve the merged "
            "folder to be safe.\n\n"
        )
    else:
        serve = (
            f"vllm serve . --served-model-name {model_name}{remote} \\\n"
            "    --limit-mm-per-prompt '{\"image\": 1}' --max-model-len 8192 --dtype bfloat16\n"
        )
        caveat = ""
    return (
        f"{caveat}From the export folder, on a GPU host with vLLM installed "
        "(`pip install vllm`):\n\n"
        f"```bash\n{serve}```\n\n"
        "Then ask with the OpenAI client; the image goes as a base64 data URL:\n\n"
        "```python\n"
        "import base64\n"
        "from openai import OpenAI\n\n"
        'client = OpenAI(base_url="http://localhost:8000/v1", api_key="unused")\n'
        'image = base64.b64encode(open("frame.jpg", "rb").read()).decode()\n'
        "reply = client.chat.completions.create(\n"
        f'    model="{model_name}",\n'
        "    temperature=0,\n"
        '    messages=[{"role": "user", "content": [\n'
        '        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{image}"}},\n'
        '        {"type": "text", "text": PROMPT},\n'
        "    ]}],\n"
        ")\n"
        "answer = reply.choices[0].message.content\n"
        "```\n\n"
        "vLLM resizes images with the processor settings saved in this folder, which are the "
        "ones the model was trained with; check that a server-side `--mm-processor-kwargs` does "
        "not override them."
    )


def write_deploy(
    out: Path,
    record: InferenceRecord,
    kind: str,
    *,
    model_name: str,
    prompt: str,
    format_text: str,
) -> list[str]:
    """Write ``out/deploy/``; the files written (relative to ``out``)."""
    folder = out / DEPLOY_DIR
    folder.mkdir()
    shutil.copy2(_template("inference.py"), folder / "inference.py")
    memory = inference_memory(record)
    pins = requirements(record, kind)
    environment = {
        "HF_HOME": "/srv/hf-cache",
        "SAM2_EXPORT": "/srv/model",
        "CUDA_VISIBLE_DEVICES": "0",
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
    }
    if kind != "adapter":
        environment["HF_HUB_OFFLINE"] = "1"  # everything is in the image
    config = {
        "model": {
            "name": model_name,
            "family": record.family,
            "export": kind,
            "base_model": record.base_model,
            "answer_format": record.answer_format,
            "labels": record.labels,
            "prompt": prompt,
        },
        "image": record.image.model_dump(),
        "hardware": memory,
        "environment": environment,
        "install": pins,
        "versions": record.versions,
        "serving": {
            "vllm": VLLM_SUPPORT.get(record.family, (False, ""))[0],
            "note": VLLM_SUPPORT.get(record.family, (False, "not checked"))[1] or None,
        },
    }
    (folder / CONFIG_NAME).write_text(
        "# Written by sam2-finetune export: what serving this model needs.\n"
        + yaml.safe_dump(config, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    image = model_name.lower().replace("_", "-")
    offline = (
        "ENV HF_HUB_OFFLINE=1\n"
        if kind != "adapter"
        else (
            "# The adapter loads its base model from the Hub at start: mount a cache at\n"
            "# HF_HOME, or export with --merge for a self-contained image.\n"
        )
    )
    dockerfile = string.Template(_template("Dockerfile").read_text(encoding="utf-8"))
    (folder / "Dockerfile").write_text(
        dockerfile.substitute(image=image, requirements=pins, offline_env=offline),
        encoding="utf-8",
    )
    hardware = (
        f"GPU memory: about {memory['gpu_memory_gib']} GiB ({memory['assumes']}; "
        f"{memory['basis']}); a {memory['suggested_gpu']} GPU."
    )
    readme = string.Template(_template("README.md").read_text(encoding="utf-8"))
    (folder / "README.md").write_text(
        readme.substitute(
            model_name=model_name,
            requirements=pins,
            image=image,
            hardware=hardware,
            serving=serving_text(record, kind, model_name).replace("PROMPT", repr(prompt)),
            answer_format=record.answer_format,
            format_text=format_text,
            prompt=prompt,
        ),
        encoding="utf-8",
    )
    return [f"{DEPLOY_DIR}/{p.name}" for p in sorted(folder.iterdir())]
