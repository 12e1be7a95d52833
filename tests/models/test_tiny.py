"""Tiny offline models: every family builds, round-trips, processes an image and trains."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from PIL import Image  # noqa: E402

from sam2_finetune.cli import main  # noqa: E402
from sam2_finetune.errors import ModelError, OutputExistsError  # noqa: E402
from sam2_finetune.models import tiny  # noqa: E402
from sam2_finetune.models.loading import load_model, load_processor  # noqa: E402
from sam2_finetune.models.registry import FAMILIES as REGISTRY  # noqa: E402
from sam2_finetune.models.tiny import (  # noqa: E402
    MARKER_FILE,
    TINY_FAMILIES,
    build_tiny_model,
    resolve_checkpoint,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAMILIES = list(TINY_FAMILIES)
ANSWER = '[{"label": "car", "bbox_2d": [12, 34, 560, 780]}]'


def _image(seed: int = 0) -> Image.Image:
    """A 48x40 RGB frame with structure (a gradient and a box), not a flat colour."""
    generator = torch.Generator().manual_seed(seed)
    pixels = (torch.rand(40, 48, 3, generator=generator) * 255).to(torch.uint8)
    pixels[10:30, 12:36] = torch.tensor([220, 40, 40], dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def _messages(image: Image.Image | None = None, answer: str | None = ANSWER) -> list[dict]:
    image_part = {"type": "image", "image": image} if image is not None else {"type": "image"}
    user = {"role": "user", "content": [image_part, {"type": "text", "text": "Find every car."}]}
    if answer is None:
        return [user]
    return [user, {"role": "assistant", "content": [{"type": "text", "text": answer}]}]


def _inputs(processor, family: str, image: Image.Image) -> dict:
    """Model inputs for one image + prompt + answer, as a collator would build them."""
    text = processor.apply_chat_template(_messages())
    batch = processor(text=[text], images=[[image]], return_tensors="pt")
    batch.pop("labels", None)  # PaliGemma's processor adds its own; we pass ours
    return dict(batch)


@pytest.mark.parametrize("family", FAMILIES)
def test_build_writes_a_small_loadable_folder(tiny_dirs, family):
    path = tiny_dirs(family)
    marker = json.loads((path / MARKER_FILE).read_text())
    assert marker["family"] == family
    assert marker["tiny_version"] == tiny.TINY_VERSION
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json"):
        assert (path / name).is_file(), name
    size = sum(f.stat().st_size for f in path.iterdir())
    assert size < 1_000_000, f"{family} tiny folder is {size} bytes"
    assert 10_000 < marker["parameters"] < 200_000
    assert json.loads((path / "config.json").read_text())["model_type"] == (
        REGISTRY[family].model_type
    )
    # Every file as readable as the umask allows (safetensors alone writes 0600).
    mask = os.umask(0)
    os.umask(mask)
    assert {f.name: f.stat().st_mode & 0o777 for f in path.iterdir()} == {
        f.name: 0o666 & ~mask for f in path.iterdir()
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_round_trip_through_the_loaders_and_the_auto_classes(tiny_dirs, family):
    path = tiny_dirs(family)
    row = REGISTRY[family]
    processor = load_processor(path, family)
    model = load_model(path, family)
    assert type(processor).__name__ == row.processor_class
    assert type(model).__name__ == row.model_class
    # The generic path a real checkpoint takes gives the same classes (the no-video processors
    # are registered with AutoProcessor; unregistered, it would return only the tokenizer).
    auto_processor = transformers.AutoProcessor.from_pretrained(path)
    assert type(auto_processor) is type(processor)
    auto_model = transformers.AutoModelForImageTextToText.from_pretrained(path)
    assert type(auto_model) is type(model)
    for (name, a), (_, b) in zip(
        model.state_dict().items(), auto_model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert processor.tokenizer.chat_template and "{% generation %}" in (
        processor.tokenizer.chat_template
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_processor_expands_image_tokens_and_gives_pixels(tiny_dirs, family):
    processor = load_processor(tiny_dirs(family), family)
    row = REGISTRY[family]
    text = processor.apply_chat_template(_messages(answer=None), add_generation_prompt=True)
    assert text.count(row.image_placeholder) == 1
    batch = processor(text=[text], images=[[_image()]], return_tensors="pt")
    image_token_id = processor.tokenizer.convert_tokens_to_ids(row.image_token)
    assert image_token_id != processor.tokenizer.unk_token_id
    count = int((batch["input_ids"] == image_token_id).sum())
    assert 4 <= count <= 64, f"{count} image tokens"
    assert torch.isfinite(batch["pixel_values"]).all()
    assert batch["pixel_values"].numel() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_with_labels_and_backward_reach_every_part(tiny_dirs, family):
    path = tiny_dirs(family)
    processor, model = load_processor(path, family), load_model(path, family)
    inputs = _inputs(processor, family, _image())
    output = model(**inputs, labels=inputs["input_ids"])
    assert torch.isfinite(output.loss) and output.loss > 0
    output.loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    row = REGISTRY[family]
    skip = row.skip_modules
    # The image reaches the loss: the vision tower and projector get gradients, as does the LM.
    vision = [n for n in grads if n.startswith(skip[:-1])]
    text = [n for n in grads if n.startswith(row.language_model)]
    assert vision and text
    for names in (vision, text):
        nonzero = [n for n in names if grads[n] is not None and grads[n].abs().sum() > 0]
        assert len(nonzero) >= 0.9 * len(names), set(names) - set(nonzero)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_image_changes_the_output(tiny_dirs, family):
    path = tiny_dirs(family)
    processor, model = load_processor(path, family), load_model(path, family).eval()
    with torch.no_grad():
        a = model(**_inputs(processor, family, _image(0))).logits
        b = model(**_inputs(processor, family, _image(1))).logits
    assert a.shape == b.shape
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_forward_backward_trains_only_the_adapters(tiny_dirs, family):
    from peft import LoraConfig, get_peft_model

    path = tiny_dirs(family)
    processor, model = load_processor(path, family), load_model(path, family)
    prefix = re.escape(REGISTRY[family].language_model)
    model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=rf"{prefix}\..*\.(q_proj|v_proj)")
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    inputs = _inputs(processor, family, _image())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(3):
        loss = model(**inputs, labels=inputs["input_ids"]).loss
        loss.backward()
        lora_b = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
        assert all(g is not None and torch.isfinite(g).all() for g in lora_b)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses


@pytest.mark.parametrize("family", FAMILIES)
def test_assistant_mask_marks_only_the_answer(tiny_dirs, family):
    processor = load_processor(tiny_dirs(family), family)
    tokenizer = processor.tokenizer
    end = {
        "llava": tokenizer.eos_token,
        "qwen2_vl": "<|im_end|>",
        "qwen2_5_vl": "<|im_end|>",
        "idefics3": "<end_of_utterance>",
        "smolvlm": "<end_of_utterance>",
        "paligemma": tokenizer.eos_token,
        "gemma3": "<end_of_turn>",
    }[family]
    if REGISTRY[family].prompt_style == "chat_template":
        batch = processor.apply_chat_template(
            _messages(_image()),
            tokenize=True,
            return_dict=True,
            return_assistant_tokens_mask=True,
        )
    else:
        # PaliGemma's processor inserts <bos> after the image tokens, which shifts the
        # processor-level mask; its training path is prefix + suffix (checked below).
        batch = tokenizer.apply_chat_template(
            _messages(), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
    ids, mask = batch["input_ids"][0], batch["assistant_masks"][0]
    if isinstance(ids, int):  # the tokenizer returns one sequence unbatched
        ids, mask = batch["input_ids"], batch["assistant_masks"]
    answer_ids = [i for i, m in zip(ids, mask, strict=True) if m]
    assert tokenizer.decode(answer_ids).strip() == ANSWER + end
    # One contiguous run: nothing of the system text, prompt or image tokens is marked.
    marked = [i for i, m in enumerate(mask) if m]
    assert marked == list(range(marked[0], marked[-1] + 1))


def test_paligemma_suffix_labels_mark_only_the_answer(tiny_dirs):
    processor = load_processor(tiny_dirs("paligemma"), "paligemma")
    suffix = "<loc0012><loc0034><loc0560><loc0780> car"
    batch = processor(text="<image>detect car", images=_image(), suffix=suffix, return_tensors="pt")
    labels = batch["labels"][0]
    assert processor.tokenizer.decode(labels[labels != -100]) == suffix + "<eos>"


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    from safetensors.torch import load_file

    a = load_file(build_tiny_model("smolvlm", tmp_path / "a", seed=1) / "model.safetensors")
    b = load_file(build_tiny_model("smolvlm", tmp_path / "b", seed=1) / "model.safetensors")
    c = load_file(build_tiny_model("smolvlm", tmp_path / "c", seed=2) / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_building_does_not_move_the_callers_random_state(tmp_path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_model("gemma3", tmp_path / "g")
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.slow
def test_qlora_4bit_forward_backward(tiny_dirs):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    family = "qwen2_vl"
    path = tiny_dirs(family)
    processor = load_processor(path, family)
    model = load_model(path, family, quantization="4bit")
    kinds = {n: type(m).__name__ for n, m in model.named_modules()}
    assert kinds["model.language_model.layers.0.self_attn.q_proj"] == "Linear4bit"
    assert kinds["model.visual.blocks.0.attn.qkv"] == "Linear"  # vision stays full precision
    assert kinds["lm_head"] == "Linear"
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(
        model,
        LoraConfig(r=4, lora_alpha=8, target_modules=r"model\.language_model\..*\.(q_proj|v_proj)"),
    )
    inputs = _inputs(processor, family, _image())
    loss = model(**inputs, labels=inputs["input_ids"]).loss
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize(
    "family", [name for name, row in REGISTRY.items() if row.trust_remote_code]
)
def test_remote_code_families_say_why_there_is_no_tiny_model(tmp_path, family):
    with pytest.raises(ModelError, match="trust_remote_code") as info:
        build_tiny_model(family, tmp_path / family)
    assert "Hub" in str(info.value) and "qwen2_vl" in str(info.value)
    assert not (tmp_path / family).exists()


def test_unknown_family_lists_the_known_ones(tmp_path):
    with pytest.raises(ModelError, match=r"unknown model family 'qwen9'.*smolvlm"):
        build_tiny_model("qwen9", tmp_path / "x")


def test_refuses_to_overwrite_unless_asked(tmp_path):
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        build_tiny_model("llava", out)
    assert (out / "keep.txt").read_text() == "mine"
    build_tiny_model("llava", out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / MARKER_FILE).is_file()


def test_resolve_checkpoint_builds_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(tiny.CACHE_ENV, str(tmp_path))
    assert resolve_checkpoint("Qwen/Qwen2-VL-2B-Instruct") == "Qwen/Qwen2-VL-2B-Instruct"
    assert resolve_checkpoint("/some/folder") == "/some/folder"
    path = Path(resolve_checkpoint("tiny:smolvlm"))
    assert path.parent == tmp_path / "tiny" and path.name.startswith("smolvlm-v")
    stamp = (path / MARKER_FILE).stat().st_mtime_ns
    calls = []
    monkeypatch.setattr(tiny, "_build_into", lambda *a, **k: calls.append(a))
    assert resolve_checkpoint("tiny:smolvlm") == str(path)
    assert calls == [] and (path / MARKER_FILE).stat().st_mtime_ns == stamp
    # load_* accept the tiny reference directly.
    assert type(load_model("tiny:smolvlm", "smolvlm")).__name__ == "SmolVLMForConditionalGeneration"


def test_resolve_checkpoint_losing_a_build_race_uses_the_winners_copy(tmp_path, monkeypatch):
    """Two xdist workers building the same family: the second rename fails; it must not raise."""
    monkeypatch.setenv(tiny.CACHE_ENV, str(tmp_path))
    real_build = tiny._build_into
    winner: list[Path] = []

    def build_while_another_worker_finishes_first(family, builder, folder, seed, size="default"):
        real_build(family, builder, folder, seed, size)
        target = tiny.tiny_cache_path(family, size)
        target.mkdir()
        real_build(family, builder, target, seed, size)  # the other worker's finished copy
        (target / "winner").write_text("")
        winner.append(target)

    monkeypatch.setattr(tiny, "_build_into", build_while_another_worker_finishes_first)
    path = Path(resolve_checkpoint("tiny:llava"))
    assert [path] == winner and (path / "winner").is_file()
    assert [p.name for p in (tmp_path / "tiny").iterdir()] == [path.name]  # no temp left behind


def test_cli_builds_and_reports(tmp_path, capsys):
    assert main(["tiny-model", "idefics3", "--out", str(tmp_path / "m"), "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert "idefics3" in out and "parameters" in out
    assert json.loads((tmp_path / "m" / MARKER_FILE).read_text())["seed"] == 3


def test_cli_json_reports_what_was_built(tmp_path, capsys):
    out = tmp_path / "m"
    assert main(["tiny-model", "gemma3", "--out", str(out), "--seed", "5", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    marker = json.loads((out / MARKER_FILE).read_text())
    assert payload["path"] == str(out) and payload["family"] == "gemma3"
    assert payload["parameters"] == marker["parameters"] > 0
    assert payload["seed"] == 5 and payload["tiny_version"] == tiny.TINY_VERSION
    assert payload["size_bytes"] == sum(f.stat().st_size for f in out.iterdir())
    assert set(payload) >= {"transformers", "seconds"}


@pytest.mark.parametrize("seed", ["-1", "99999999999999999999"])
def test_cli_refuses_a_seed_torch_cannot_take(tmp_path, capsys, seed):
    assert main(["tiny-model", "smolvlm", "--out", str(tmp_path / "m"), "--seed", seed]) == 2
    err = capsys.readouterr().err
    assert "  - --seed: Input should be" in err and "Traceback" not in err
    assert not (tmp_path / "m").exists()


def test_cli_explains_remote_code_families(tmp_path, capsys):
    assert main(["tiny-model", "cogvlm", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "trust_remote_code" in err and "Traceback" not in err


def test_only_the_default_tiny_models_are_plumbing_models():
    # train() runs plumbing models on one torch thread; the learner and real checkpoints keep
    # every thread.
    assert tiny.is_plumbing_model("tiny:smolvlm")
    assert tiny.is_plumbing_model("tiny:qwen2_vl")
    assert not tiny.is_plumbing_model("tiny:llava-learner")
    assert not tiny.is_plumbing_model("Qwen/Qwen2-VL-2B-Instruct")
