"""One loader for tiny folders and real checkpoints: layouts, family checks, quantization."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from sam2_finetune.errors import ModelError  # noqa: E402
from sam2_finetune.models.loading import (  # noqa: E402
    load_model,
    load_processor,
    quantization_config,
)
from sam2_finetune.models.registry import FAMILIES as REGISTRY  # noqa: E402
from sam2_finetune.models.tiny import TINY_FAMILIES  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAMILIES = list(TINY_FAMILIES)
REMOTE_CODE_FAMILIES = [name for name, row in REGISTRY.items() if row.trust_remote_code]


def _as_published_checkpoint(tiny: Path, out: Path) -> Path:
    """Rewrite a tiny folder into the layout real Hub checkpoints use.

    Published checkpoints keep the image processor in ``preprocessor_config.json`` under its
    torchvision class name, the chat template in ``chat_template.json``, name the stock processor
    class (``Qwen2VLProcessor``, not our no-video subclass), may ship a video processor config,
    and Qwen's image processor states ``min_pixels`` / ``max_pixels`` instead of ``size``.
    """
    shutil.copytree(tiny, out)
    processor = json.loads((out / "processor_config.json").read_text())
    image = processor.pop("image_processor")
    ours = processor["processor_class"]
    stock = ours.replace("WithoutVideo", "")
    image["processor_class"] = processor["processor_class"] = stock
    assert image["image_processor_type"].endswith("ImageProcessor")  # not the *Pil name
    if "min_pixels" not in image and image.get("size", {}).keys() == {
        "shortest_edge",
        "longest_edge",
    }:
        size = image.pop("size")
        image["min_pixels"], image["max_pixels"] = size["shortest_edge"], size["longest_edge"]
    (out / "preprocessor_config.json").write_text(json.dumps(image))
    (out / "processor_config.json").write_text(json.dumps(processor))
    template = (out / "chat_template.jinja").read_text()
    (out / "chat_template.jinja").unlink()
    (out / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    if ours != stock:
        video = {"video_processor_type": stock.replace("Processor", "VideoProcessor")}
        (out / "video_preprocessor_config.json").write_text(json.dumps(video))
    return out


def _encode(processor) -> dict:
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find the dog."}]}
    ]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    image = Image.new("RGB", (60, 44), (10, 120, 200))
    return dict(processor(text=[text], images=[[image]], return_tensors="pt"))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_published_checkpoint_layout_loads_like_the_tiny_folder(tiny_dirs, tmp_path, family):
    tiny = tiny_dirs(family)
    published = _as_published_checkpoint(tiny, tmp_path / "published")
    assert not (published / "processor_config.json").read_text().count("WithoutVideo")
    a, b = _encode(load_processor(tiny, family)), _encode(load_processor(published, family))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    row = REGISTRY[family]
    assert type(load_processor(published, family)).__name__ == row.processor_class


@pytest.mark.parametrize("family", FAMILIES)
def test_module_names_used_for_quantization_and_lora_exist(tiny_dirs, family):
    """The registry's module prefixes are real module paths of the family."""
    model = load_model(tiny_dirs(family), family)
    names = [name for name, _ in model.named_modules()]
    row = REGISTRY[family]
    for prefix in (*row.skip_modules, row.language_model):
        assert prefix in names, prefix
    lora = [n for n in names if re.fullmatch(row.lora_target_modules, n)]
    assert lora and all(n.startswith(row.language_model) for n in lora)
    # Every linear layer outside the skipped modules is in the language model: quantisation
    # leaves the vision tower and the projector alone.
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    quantised = [n for n in linear if not n.startswith(row.skip_modules)]
    assert quantised and all(n.startswith(row.language_model) for n in quantised)


def test_every_tiny_family_is_a_native_registry_family():
    """Tiny models exist exactly for the families transformers ships the code of."""
    assert set(TINY_FAMILIES) == {n for n, row in REGISTRY.items() if not row.trust_remote_code}


def test_a_checkpoint_of_another_family_is_refused_by_name(tiny_dirs):
    with pytest.raises(ModelError, match=r"not a qwen2_vl model.*expected 'qwen2_vl'.*'smolvlm'"):
        load_model(tiny_dirs("smolvlm"), "qwen2_vl")
    with pytest.raises(ModelError, match="model_type"):
        load_processor(tiny_dirs("smolvlm"), "idefics3")


def test_a_missing_folder_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match=r"cannot load the llava model.*Fix:"):
        load_model(tmp_path / "nowhere", "llava")
    with pytest.raises(ModelError, match="cannot load the llava processor"):
        load_processor(tmp_path / "nowhere", "llava")


def test_unknown_family_is_a_model_error(tmp_path):
    with pytest.raises(ModelError, match="unknown model family 'florence2'"):
        load_model(tmp_path, "florence2")


@pytest.mark.parametrize("family", REMOTE_CODE_FAMILIES)
def test_remote_code_families_need_explicit_trust(tmp_path, family):
    with pytest.raises(ModelError, match="trust_remote_code"):
        load_model(tmp_path, family)
    with pytest.raises(ModelError, match="trust_remote_code"):
        load_processor(tmp_path, family)


def test_quantization_configs():
    assert quantization_config("gemma3", "none") is None
    four = quantization_config("gemma3", "4bit", torch.bfloat16)
    assert four.load_in_4bit and four.bnb_4bit_quant_type == "nf4"
    assert four.bnb_4bit_use_double_quant and four.bnb_4bit_compute_dtype == torch.bfloat16
    assert four.llm_int8_skip_modules == list(REGISTRY["gemma3"].skip_modules)
    eight = quantization_config("qwen2_vl", "8bit")
    # All of model.visual (tower and merger, the projector) and the head stay unquantised.
    assert eight.load_in_8bit and eight.llm_int8_skip_modules == [
        "model.visual.patch_embed",
        "model.visual.blocks",
        "model.visual.merger",
        "lm_head",
    ]
    with pytest.raises(ModelError, match="quantization"):
        quantization_config("qwen2_vl", "2bit")  # type: ignore[arg-type]


def test_8bit_keeps_vision_and_head_in_full_precision_and_runs(tiny_dirs):
    processor = load_processor(tiny_dirs("smolvlm"), "smolvlm")
    model = load_model(tiny_dirs("smolvlm"), "smolvlm", quantization="8bit")
    kinds = {name: type(module).__name__ for name, module in model.named_modules()}
    assert kinds["model.text_model.layers.0.self_attn.q_proj"] == "Linear8bitLt"
    assert kinds["model.vision_model.encoder.layers.0.self_attn.q_proj"] == "Linear"
    assert kinds["model.connector.modality_projection.proj"] == "Linear"
    assert kinds["lm_head"] == "Linear"
    with torch.no_grad():
        logits = model(**_encode(processor)).logits
    assert torch.isfinite(logits).all()


def test_dtype_by_name_and_tiny_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM2_FINETUNE_CACHE", str(tmp_path))
    model = load_model("tiny:gemma3", "gemma3", dtype="bfloat16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert type(load_processor("tiny:gemma3", "gemma3")).__name__ == "Gemma3Processor"
    with pytest.raises(ModelError, match=r"unknown dtype.*'bf16'"):
        load_model("tiny:gemma3", "gemma3", dtype="bf16")
