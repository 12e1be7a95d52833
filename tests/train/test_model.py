"""``prepare_model``: what is trained, in which dtype, for LoRA, full fine-tuning and QLoRA."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from PIL import Image  # noqa: E402

from sam2_finetune.models.registry import get_family  # noqa: E402
from sam2_finetune.train.config import load_config  # noqa: E402
from sam2_finetune.train.model import prepare_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def options(tiny_dirs, family="smolvlm", *overrides):
    config = load_config(
        preset="quick_test",
        overrides=[f"model.family={family}", f"model.checkpoint={tiny_dirs(family)}", *overrides],
    )
    return config.model


def batch(processor):
    image = Image.new("RGB", (48, 40), (200, 30, 30))
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Find cars."}]},
        {"role": "assistant", "content": [{"type": "text", "text": "[]"}]},
    ]
    text = processor.apply_chat_template(messages)
    inputs = dict(processor(text=[text], images=[[image]], return_tensors="pt"))
    inputs.pop("labels", None)
    return inputs


def train_step(prepared):
    inputs = batch(prepared.processor)
    loss = prepared.model(**inputs, labels=inputs["input_ids"]).loss
    assert torch.isfinite(loss)
    loss.backward()
    return loss


def test_lora_trains_only_fp32_adapters(tiny_dirs):
    prepared = prepare_model(options(tiny_dirs), precision="fp32")
    trainable = {n: p for n, p in prepared.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    assert 0 < prepared.trainable_parameters < prepared.total_parameters
    train_step(prepared)
    assert all(p.grad is not None for n, p in trainable.items() if "lora_B" in n)


def test_bf16_keeps_frozen_weights_in_bf16_and_adapters_in_fp32(tiny_dirs):
    prepared = prepare_model(options(tiny_dirs), precision="bf16")
    dtypes = {p.dtype for n, p in prepared.model.named_parameters() if "lora_" not in n}
    assert dtypes == {torch.bfloat16}
    adapters = {p.dtype for n, p in prepared.model.named_parameters() if "lora_" in n}
    assert adapters == {torch.float32}


def test_full_fine_tuning_freezes_vision_and_projector_as_configured(tiny_dirs):
    row = get_family("smolvlm")
    prepared = prepare_model(
        options(tiny_dirs, "smolvlm", "model.method=full", "model.freeze_projector=false"),
        precision="fp32",
    )
    params = dict(prepared.model.named_parameters())
    vision = [n for n in params if n.startswith(row.vision_modules)]
    projector = [n for n in params if n.startswith(row.projector_modules)]
    assert vision and projector
    assert not any(params[n].requires_grad for n in vision)
    assert all(params[n].requires_grad for n in projector)
    language = [n for n in params if ".text_model." in n]
    assert language and all(params[n].requires_grad for n in language)
    train_step(prepared)


def test_lora_with_an_unfrozen_projector_trains_it_in_full(tiny_dirs):
    prepared = prepare_model(
        options(tiny_dirs, "smolvlm", "model.freeze_projector=false"), precision="fp32"
    )
    trainable = [n for n, p in prepared.model.named_parameters() if p.requires_grad]
    assert any("modules_to_save" in n and "connector" in n for n in trainable)
    assert not any("vision_model" in n for n in trainable)


def test_bf16_lora_trains_an_unfrozen_projector_in_fp32(tiny_dirs):
    # peft's modules_to_save copy would be bf16 like the weights: updates rounded away, and
    # fp16's grad scaler refuses to unscale half-precision gradients.
    prepared = prepare_model(
        options(tiny_dirs, "smolvlm", "model.freeze_projector=false"), precision="bf16"
    )
    trained = {n: p for n, p in prepared.model.named_parameters() if p.requires_grad}
    assert any("modules_to_save" in n for n in trained)
    assert {p.dtype for p in trained.values()} == {torch.float32}
    frozen = {p.dtype for p in prepared.model.parameters() if not p.requires_grad}
    assert frozen == {torch.bfloat16}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        train_step(prepared)
    assert all(p.grad is not None for n, p in trained.items() if "connector" in n)


def test_gradient_checkpointing_reaches_the_adapters(tiny_dirs):
    prepared = prepare_model(options(tiny_dirs), precision="fp32", gradient_checkpointing=True)
    assert prepared.model.base_model.model.is_activation_checkpointing
    train_step(prepared)
    grads = [p.grad for n, p in prepared.model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.slow
def test_qlora_keeps_unquantised_parts_in_the_compute_dtype(tiny_dirs):
    """The light k-bit preparation: the vision tower stays bf16 (peft's would make it fp32)."""
    family = "qwen2_vl"
    prepared = prepare_model(
        options(tiny_dirs, family, "model.quantization=4bit"), precision="bf16"
    )
    kinds = {n: type(m).__name__ for n, m in prepared.model.named_modules()}
    assert any(k == "Linear4bit" for k in kinds.values())
    vision = [p for n, p in prepared.model.named_parameters() if ".visual." in n]
    assert vision and {p.dtype for p in vision} == {torch.bfloat16}
    assert not any(p.requires_grad for p in vision)
    train_step(prepared)


@pytest.mark.slow
def test_qlora_with_gradient_checkpointing_reaches_the_adapters(tiny_dirs):
    """A 4-bit model with frozen bf16 embeddings under checkpointing trains every adapter; the
    embeddings' output requires grad (``enable_input_require_grads``: prepare_model calls it and
    transformers' checkpointing does too), which a reentrant checkpoint needs."""
    prepared = prepare_model(
        options(tiny_dirs, "qwen2_vl", "model.quantization=4bit"),
        precision="bf16",
        gradient_checkpointing=True,
    )
    assert prepared.model.base_model.model.is_activation_checkpointing
    embeddings = prepared.model.get_input_embeddings()
    assert not embeddings.weight.requires_grad and embeddings.weight.dtype == torch.bfloat16
    inputs = batch(prepared.processor)
    assert embeddings(inputs["input_ids"]).requires_grad
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = prepared.model(**inputs, labels=inputs["input_ids"]).loss
    loss.backward()
    grads = [p.grad for n, p in prepared.model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_wrapping_in_lora_prints_no_deprecation_noise(tiny_dirs):
    # peft reads transformers' deprecated `is_gradient_checkpointing`: its FutureWarning was
    # printed on every train, evaluate and export run; models.loading.quiet_peft drops it.
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prepare_model(options(tiny_dirs), precision="fp32")
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]
