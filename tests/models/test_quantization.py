"""QLoRA on the CPU, with and without AVX512-BF16: the probe, the tiny models, the loader's refusal.

bitsandbytes 0.50 decides per layer, in ``Linear4bit.__init__``, whether to repack 4-bit weights
for its AVX512-BF16 CPU kernel (``bitsandbytes.nn.modules.has_avx512bf16()``, a cpuid test in its
native library; no environment variable overrides it). Tests run the machine's own path in this
process and the other path in a subprocess where that function answers False; the 8-bit matmul
similarly follows torch's CPU capability, which ``ATEN_CPU_CAPABILITY=avx2`` lowers for real.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("bitsandbytes")
pytest.importorskip("peft")

from qlora_round import batch_of, qlora_round  # noqa: E402

from sam2_finetune.errors import ModelError  # noqa: E402
from sam2_finetune.models.loading import load_model, load_processor  # noqa: E402
from sam2_finetune.models.quantization import (  # noqa: E402
    KERNELS_NOTICE,
    cpu_packs_4bit,
    fits_cpu_packing,
    lm_linear_shapes,
    probe_4bit,
    unfit_for_cpu_packing,
)
from sam2_finetune.models.registry import FAMILIES  # noqa: E402
from sam2_finetune.models.tiny import TINY_FAMILIES, TINY_TEXT_CONFIG  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[2]


def _cpu_has_avx512_bf16() -> bool:
    """What the kernel reports, independently of bitsandbytes' own test."""
    cpuinfo = Path("/proc/cpuinfo")
    return cpuinfo.is_file() and "avx512_bf16" in cpuinfo.read_text()


def test_bitsandbytes_detects_the_cpu_feature_the_kernel_reports():
    if Path("/proc/cpuinfo").is_file():
        assert cpu_packs_4bit() == _cpu_has_avx512_bf16()


def test_the_packing_rule():
    assert fits_cpu_packing(64, 32) and fits_cpu_packing(4096, 11008)
    assert not fits_cpu_packing(32, 32) and not fits_cpu_packing(64, 48)
    shapes = lm_linear_shapes(48, 128, 2, 1, 24)
    assert [name for name, _, _ in unfit_for_cpu_packing(shapes)] == [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
    ]  # fmt: skip


def test_every_registry_checkpoint_and_the_tiny_models_fit_the_cpu_kernel():
    text = TINY_TEXT_CONFIG
    tiny = lm_linear_shapes(
        text["hidden_size"],
        text["intermediate_size"],
        text["num_attention_heads"],
        text["num_key_value_heads"],
        text["head_dim"],
    )
    assert unfit_for_cpu_packing(tiny) == []
    for family in FAMILIES.values():
        for checkpoint in family.checkpoints:
            a = checkpoint.architecture
            shapes = lm_linear_shapes(
                a.hidden_size,
                a.intermediate_size,
                a.num_attention_heads,
                a.num_kv_heads,
                a.head_dim,
            )
            assert unfit_for_cpu_packing(shapes) == [], checkpoint.name


def test_the_probe_runs_a_real_4bit_layer_the_way_a_model_does():
    probe = probe_4bit("cpu")
    assert probe.error is None
    assert probe.packed == cpu_packs_4bit()


def test_the_probe_fails_where_models_crash():
    """A 32x32 layer is what the tiny models had: the packed CPU kernel refuses it."""
    probe = probe_4bit("cpu", in_features=32, out_features=32)
    if cpu_packs_4bit():
        assert probe.error is not None and "RuntimeError" in probe.error
    else:
        assert probe.error is None and not probe.packed


def _assert_qlora_round(result: dict, family: str, quantization: str) -> None:
    row = FAMILIES[family]
    kinds = result["kinds"]
    quantised = [n for n, k in kinds.items() if k in ("Linear4bit", "Linear8bitLt")]
    expected = "Linear4bit" if quantization == "4bit" else "Linear8bitLt"
    assert quantised and all(kinds[n] == expected for n in quantised)
    # The language model only: vision tower, projector and head stay full precision.
    assert all(n.startswith(row.language_model) for n in quantised)
    assert kinds[row.output_head] == "Linear"
    assert result["eval_finite"] and result["loss"] == pytest.approx(result["loss"])  # not NaN
    grads = result["grads"]
    # Every adapter gets a gradient, the first layer's too: nothing cut it on the way back.
    assert grads and all(g is not None and g > 0 for g in grads.values()), grads


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["4bit", "8bit"])
@pytest.mark.parametrize("family", list(TINY_FAMILIES))
def test_qlora_on_this_cpu(tiny_dirs, family, quantization):
    result = qlora_round(tiny_dirs(family), family, quantization)
    _assert_qlora_round(result, family, quantization)
    if quantization == "4bit":
        # On AVX512-BF16 CPUs the evaluation pass ran the packed kernel on every 4-bit layer.
        assert bool(result["packed"]) == cpu_packs_4bit()


@pytest.mark.slow
def test_qlora_without_avx512_bf16(tiny_dirs, tmp_path):
    """The path of CPUs without AVX512-BF16, here: bitsandbytes' detection answers False (in a
    subprocess, before any layer exists) and torch runs at AVX2 (the 8-bit matmul's switch)."""
    families = ["qwen2_vl", "llava"]  # q/k/v with and without a bias
    paths = {family: str(tiny_dirs(family)) for family in families}
    script = tmp_path / "no_avx512_bf16.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json
            import torch
            from sam2_finetune.models.quantization import import_bitsandbytes
            import_bitsandbytes()
            import bitsandbytes.functional, bitsandbytes.nn.modules
            bitsandbytes.functional.has_avx512bf16 = lambda: False
            bitsandbytes.nn.modules.has_avx512bf16 = lambda: False
            torch.set_num_threads(1)
            from qlora_round import qlora_round
            from sam2_finetune.models.quantization import cpu_packs_4bit, probe_4bit
            out = {{
                "capability": torch.backends.cpu.get_cpu_capability(),
                "packs": cpu_packs_4bit(),
                "probe_small": probe_4bit("cpu", 32, 32).error,
                "rounds": {{
                    f + " " + q: qlora_round(p, f, q)
                    for f, p in {paths!r}.items() for q in ("4bit", "8bit")
                }},
            }}
            print(json.dumps(out))
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**_env(), "ATEN_CPU_CAPABILITY": "avx2", "PYTHONPATH": str(Path(__file__).parent)},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["capability"] == "AVX2" and out["packs"] is False
    assert out["probe_small"] is None  # every shape works on this path
    for key, round_ in out["rounds"].items():
        family, quantization = key.split()
        assert round_["packed"] == []
        _assert_qlora_round(round_, family, quantization)


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}


def _odd_model(tmp_path: Path) -> Path:
    """A Llama-based LLaVA whose text layers (hidden 48) do not fit the packed CPU kernel."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    config = LlavaConfig(
        vision_config={
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        text_config={
            "model_type": "llama",
            "hidden_size": 48,
            "intermediate_size": 96,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "vocab_size": 300,
        },
        image_token_index=299,
    )
    torch.manual_seed(0)
    path = tmp_path / "odd-llava"
    LlavaForConditionalGeneration(config).save_pretrained(path)
    return path


def test_the_loader_refuses_4bit_layers_this_cpu_cannot_run(tmp_path):
    path = _odd_model(tmp_path)
    if not cpu_packs_4bit():
        model = load_model(path, "llava", quantization="4bit")  # every shape works here
        assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
        return
    with pytest.raises(ModelError) as info:
        load_model(path, "llava", quantization="4bit")
    message = str(info.value)
    assert "7 of the model's 7 4-bit layers cannot run on this CPU" in message
    assert "model.language_model.layers.0.self_attn.q_proj (48 in, 48 out)" in message
    assert "AVX512-BF16" in message and "divisible by 64" in message
    assert "model.quantization=none" in message and "GPU" in message
    # Unquantised, the same folder loads.
    assert load_model(path, "llava") is not None


def test_quantisation_fits_the_tiny_models_without_refusal(tiny_dirs):
    model = load_model(tiny_dirs("gemma3"), "gemma3", quantization="4bit")
    processor = load_processor(tiny_dirs("gemma3"), "gemma3")
    with torch.no_grad():
        assert torch.isfinite(model(**batch_of(processor)).logits).all()


def test_the_kernels_notice_is_the_line_bitsandbytes_logs():
    """The filter drops exactly bitsandbytes' line: its text is still in the installed source."""
    import bitsandbytes.backends.cpu.ops as ops

    assert KERNELS_NOTICE in Path(ops.__file__).read_text()


def test_the_kernels_notice_never_reaches_users_whoever_imports_bitsandbytes():
    """peft imports bitsandbytes itself; once the models package's quantisation module is loaded
    (the loader loads it), the notice is dropped. Without it, the same import prints it (on
    AVX512-BF16 CPUs without the optional `kernels` package): the control shows the test bites."""

    def stderr_of(code: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
        )
        return result.stdout + result.stderr

    ours = stderr_of("import sam2_finetune.models.loading; import peft, bitsandbytes")
    assert KERNELS_NOTICE not in ours
    control = stderr_of("import bitsandbytes")
    if cpu_packs_4bit() and importlib.util.find_spec("kernels") is None:
        assert KERNELS_NOTICE in control
