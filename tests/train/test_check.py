"""`sam2-finetune check`: the logic runs on hand-written HardwareFacts (an H100, an 8 GB card, a
V100 without bf16, a CPU-only box); one slow test runs the real command on this machine."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sam2_finetune.cli import main
from sam2_finetune.models.quantization import KERNELS_NOTICE
from sam2_finetune.train.check import (
    CheckFinding,
    CheckReport,
    GpuFacts,
    HardwareFacts,
    check_config,
    format_report,
    needs_bitsandbytes,
    resolve_precision,
)
from sam2_finetune.train.config import load_config

REPO = Path(__file__).resolve().parents[2]
GIB = 2**30
VERSIONS = {"transformers": "5.23.0", "torch": "2.13.0"}


def gpu_box(name="H100", memory_gib=80, bf16=True, count=1, bnb_error=None) -> HardwareFacts:
    capability = (9, 0) if bf16 else (7, 0)
    gpu = GpuFacts(name, memory_gib * GIB, capability, bf16)
    return HardwareFacts(
        cuda_available=True,
        gpus=(gpu,) * count,
        cpu_count=16,
        ram_bytes=128 * GIB,
        bitsandbytes_error=bnb_error,
        versions=VERSIONS,
    )


CPU_BOX = HardwareFacts(
    cuda_available=False, cpu_count=2, ram_bytes=24 * GIB, bitsandbytes_error=None,
    versions=VERSIONS,
)  # fmt: skip


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    # Presets name data folders relative to the repository root.
    monkeypatch.chdir(REPO)


def check(preset: str, facts: HardwareFacts, *overrides: str, **kwargs) -> CheckReport:
    return check_config(load_config(preset=preset, overrides=list(overrides)), facts, **kwargs)


def messages(report: CheckReport, level: str) -> str:
    return "\n".join(f.message for f in report.findings if f.level == level)


def test_quick_test_passes_cleanly_on_a_cpu_box():
    report = check("quick_test", CPU_BOX)
    assert report.ok and report.device == "cpu" and report.precision == "fp32"
    assert messages(report, "warning") == ""
    assert report.estimate is None and "tiny random model" in messages(report, "info")


def test_production_fits_a_big_gpu_with_its_estimate_reported():
    report = check("production", gpu_box(), "data.dataset=sample_data")
    assert report.ok, format_report(report)
    assert report.precision == "bf16" and report.image_tokens == 1196
    assert report.estimate is not None and report.estimate.total < 80 * GIB
    assert "fits the GPU's 80.0 GiB" in messages(report, "info")
    assert "UNVERIFIED" in messages(report, "info")


def test_too_little_gpu_memory_is_blocking_and_says_what_to_try():
    report = check("production", gpu_box("RTX 4060", 8), "training.gradient_checkpointing=false")
    assert not report.ok
    error = messages(report, "error")
    assert "exceeds the GPU's 8.0 GiB" in error
    assert "training.gradient_checkpointing=true" in error and "data.max_pixels" in error


def test_ultra_low_memory_runs_on_an_8_gb_gpu():
    report = check("ultra_low_memory", gpu_box("RTX 4060", 8), "data.dataset=sample_data")
    assert report.ok, format_report(report)


def test_a_cuda_config_on_a_cpu_box_is_blocking():
    report = check("production", CPU_BOX)
    assert not report.ok
    assert "CUDA is not available" in messages(report, "error")
    # The estimate still describes the intended GPU run (bf16), not a CPU one.
    assert report.precision == "bf16"
    assert "fp32 on a GPU" not in messages(report, "warning")


def test_cpu_warnings_four_bit_slow_real_checkpoint_slow_fp16_noop():
    report = check(
        "qwen2_vl/2b_lora",
        CPU_BOX,
        "hardware.device=cpu",
        "model.quantization=4bit",
        "training.precision=fp16",
    )
    warnings = messages(report, "warning")
    assert "4bit quantisation on the CPU works" in warnings and "slow" in warnings
    assert "on the CPU: expect minutes to hours per step" in warnings
    assert "fp16 does nothing on the CPU" in warnings
    assert report.ok  # slow is not broken


def test_bf16_on_a_gpu_without_it_is_blocking_and_auto_picks_fp16():
    v100 = gpu_box("V100", 32, bf16=False)
    report = check("production", v100, "training.precision=bf16")
    assert "has no bf16 support" in messages(report, "error")
    config = load_config(preset="production")
    assert resolve_precision(config, v100) == "fp16"
    assert resolve_precision(config, gpu_box()) == "bf16"
    assert resolve_precision(load_config(preset="quick_test"), gpu_box()) == "fp32"


def test_fp16_on_a_bf16_gpu_and_fp32_on_a_gpu_are_warned():
    assert "fp16 on a GPU that supports bf16" in messages(
        check("production", gpu_box(), "training.precision=fp16"), "warning"
    )
    assert "fp32 on a GPU" in messages(
        check("production", gpu_box(), "training.precision=fp32"), "warning"
    )


def test_unusable_bitsandbytes_blocks_quantisation_and_8_bit_optimizers():
    report = check("production", gpu_box(bnb_error="ImportError: no libbitsandbytes_cuda"))
    error = messages(report, "error")
    assert "bitsandbytes is not usable here (ImportError: no libbitsandbytes_cuda)" in error
    assert "paged_adamw_8bit needs bitsandbytes" in error


@pytest.mark.parametrize("rate, words", [("1e-2", "too high"), ("1e-7", "too low")])
def test_learning_rates_far_outside_lora_norms_are_warned(rate, words):
    warnings = messages(check("production", gpu_box(), f"training.learning_rate={rate}"), "warning")
    assert "far outside the usual range for lora" in warnings and words in warnings


def test_lora_scale_far_from_recipes_is_warned():
    report = check("production", gpu_box(), "model.lora_alpha=256")
    assert "alpha/rank = 16" in messages(report, "warning")


def test_more_processes_than_gpus_is_blocking():
    report = check("production", gpu_box(count=2), "hardware.num_processes=4")
    assert "only 2 GPU(s) are visible" in messages(report, "error")
    assert report.ok is False


def test_old_transformers_and_remote_code():
    old = HardwareFacts(
        cuda_available=True,
        gpus=gpu_box().gpus,
        bitsandbytes_error=None,
        versions={"transformers": "4.44.2"},
    )
    assert "needs transformers >= 4.49.0, installed 4.44.2" in messages(
        check("production", old), "error"
    )
    report = check("cogvlm/17b_qlora", gpu_box())
    assert "trust_remote_code" in messages(report, "warning")
    assert report.image_tokens == 1227


def test_max_length_shorter_than_the_image_is_blocking():
    report = check("production", gpu_box(), "data.max_length=1024")
    assert "leaves no room for the answer" in messages(report, "error")
    report = check("production", gpu_box(), "data.max_length=1300")
    assert "may truncate answers" in messages(report, "warning")
    # A smaller frame is fewer image tokens, and memory follows.
    small = check("production", gpu_box(), frame_size=(640, 360))
    large = check("production", gpu_box())
    assert small.image_tokens < large.image_tokens and small.ok
    assert small.estimate.total < large.estimate.total


def test_missing_loggers_flash_attention_and_dataset():
    report = check(
        "production",
        gpu_box(),
        "output.loggers=[tensorboard, wandb]",
        "model.attn_implementation=flash_attention_2",
        "data.dataset=does/not/exist",
    )
    error = messages(report, "error")
    if importlib.util.find_spec("wandb") is None:
        assert "the wandb package is not installed" in error
    if importlib.util.find_spec("flash_attn") is None:
        assert "flash-attn package is not installed" in error
    assert "data.dataset does/not/exist does not exist yet" in messages(report, "warning")


def test_format_report_orders_errors_first_and_ends_with_a_verdict():
    report = check("production", gpu_box("RTX 3070", 8), "training.precision=fp16")
    text = format_report(report)
    lines = text.splitlines()
    levels = [line.split()[0] for line in lines[1:-1]]
    assert levels == sorted(levels, key=["ERROR", "WARNING", "ok"].index)
    assert levels[0] == "ERROR" and "WARNING" in levels  # 11.6 GiB on 8 GiB; fp16 on bf16
    assert lines[-1].startswith("FAIL: 1 error(s)")


def test_config_errors_exit_2_without_a_traceback(capsys):
    assert main(["check", "quick_test", "--set", "training.learning_rate=-1"]) == 2
    err = capsys.readouterr().err
    assert "training.learning_rate" in err and "> 0 and <= 1" in err
    assert "Traceback" not in err
    assert main(["check", "quick-test"]) == 2
    assert "did you mean 'quick_test'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_real_check_command_on_this_machine():
    """Gathers the real facts (imports torch, runs a real 4-bit layer) and reports as JSON."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sam2_finetune",
            "check",
            "quick_test",
            "--json",
            "--set",
            "model.quantization=4bit",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    payload = json.loads(result.stdout)
    assert payload["ok"] is True and payload["device"] in ("cpu", "cuda")
    hardware = payload["hardware"]
    assert hardware["cpu_count"] >= 1 and "torch" in hardware["versions"]
    if not hardware["cuda_available"]:
        # bitsandbytes >= 0.45 quantises on the CPU: the check found it usable.
        assert hardware["bitsandbytes_error"] is None
        # The probe ran the packed kernel exactly where bitsandbytes detects AVX512-BF16.
        from sam2_finetune.models.quantization import cpu_packs_4bit

        assert hardware["cpu_packs_4bit"] == cpu_packs_4bit()
        assert "AVX512-BF16 packed" in json.dumps(payload["findings"]) or not cpu_packs_4bit()
    assert KERNELS_NOTICE not in result.stdout + result.stderr


@pytest.mark.slow
def test_check_without_quantisation_never_loads_bitsandbytes():
    """No quantisation asked: bitsandbytes is not imported, and its notice is never printed."""
    code = (
        "import sys; from sam2_finetune.cli import main; rc = main(['check', 'quick_test']); "
        "print('bitsandbytes loaded:', 'bitsandbytes' in sys.modules); sys.exit(rc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "bitsandbytes loaded: False" in result.stdout
    assert KERNELS_NOTICE not in result.stdout + result.stderr
    assert "not checked" not in result.stdout  # nothing asked for it, nothing reports it


def test_quantisation_needs_a_working_probe_and_fitting_layers():
    packing_cpu = HardwareFacts(
        cuda_available=False,
        cpu_count=2,
        ram_bytes=24 * GIB,
        bitsandbytes_error=None,
        cpu_packs_4bit=True,
        versions=VERSIONS,
    )
    report = check("quick_test", packing_cpu, "model.quantization=4bit")
    assert report.ok, report.findings
    assert all(isinstance(f, CheckFinding) for f in report.findings)
    assert "AVX512-BF16 packed CPU kernel" in messages(report, "info")
    # Not probed (nothing asked for bitsandbytes when the facts were gathered): an error.
    unprobed = HardwareFacts(cuda_available=False, versions=VERSIONS)
    report = check("quick_test", unprobed, "model.quantization=4bit")
    assert "bitsandbytes is not usable here (not checked)" in messages(report, "error")
    assert check("quick_test", unprobed).ok


def test_tiny_layers_the_packed_kernel_refuses_are_an_error(monkeypatch):
    """What check would have said about the tiny models before they grew to hidden 64."""
    from sam2_finetune.models.tiny import TINY_TEXT_CONFIG

    monkeypatch.setitem(TINY_TEXT_CONFIG, "hidden_size", 32)
    monkeypatch.setitem(TINY_TEXT_CONFIG, "head_dim", 16)
    facts = HardwareFacts(
        cuda_available=False, bitsandbytes_error=None, cpu_packs_4bit=True, versions=VERSIONS
    )
    error = messages(check("quick_test", facts, "model.quantization=4bit"), "error")
    assert "tiny:smolvlm's 4-bit layers q_proj (32 in, 32 out)" in error
    assert "divisible by 64" in error and "model.quantization=none" in error
    # Without AVX512-BF16 every shape works; 8-bit has no such rule.
    no_packing = HardwareFacts(cuda_available=False, bitsandbytes_error=None, versions=VERSIONS)
    assert check("quick_test", no_packing, "model.quantization=4bit").ok
    assert check("quick_test", facts, "model.quantization=8bit").ok


def test_needs_bitsandbytes():
    assert not needs_bitsandbytes(load_config(preset="quick_test"))
    assert needs_bitsandbytes(
        load_config(preset="quick_test", overrides=["model.quantization=8bit"])
    )
    assert needs_bitsandbytes(
        load_config(preset="quick_test", overrides=["training.optimizer=paged_adamw_8bit"])
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "quick_test", "--set", "training.learning_rate=-1", "--set", "model.lora_rank=0"],
        ["check", "--set", "training.learning_rate=-1", "--set", "model.lora_rank=0", "quick_test"],
        [
            "check",
            "--set",
            "training.learning_rate=-1",
            "--set",
            "model.lora_rank=0",
            "--",
            "quick_test",
        ],
        [
            "check",
            "--frame-size",
            "640",
            "360",
            "--set",
            "training.learning_rate=-1",
            "--set",
            "model.lora_rank=0",
            "quick_test",
        ],
        [
            "check",
            "--set",
            "training.learning_rate=-1",
            "--set",
            "model.lora_rank=0",
            "--json",
            "quick_test",
        ],
    ],
)
def test_set_may_come_before_or_after_the_config(argv, capsys):
    """`--set` takes one value per flag; the config name after it is the CONFIG argument."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "quick_test.yaml + 2 override(s): 2 invalid option(s)" in err, err
    assert "training.learning_rate" in err and "model.lora_rank" in err
    assert "Traceback" not in err


def test_set_repeated_adds_up_instead_of_keeping_the_last(capsys):
    argv = ["check", "--set", "training.learning_rate=5", "quick_test"]
    assert main([*argv, "--set", "model.lora_rank=0", "--set", "data.max_length=1"]) == 2
    err = capsys.readouterr().err
    assert "+ 3 override(s): 3 invalid option(s)" in err
    assert "training.learning_rate" in err and "model.lora_rank" in err and "max_length" in err


def test_several_wrong_fields_on_the_command_line_are_reported_together(capsys):
    argv = [
        "check",
        "--set=training.learning_rate=5",
        "--set=training.batch_size=abc",
        "--set=model.famly=qwen2_vl",
        "--set=training.optimizer=adam",
        "--set=data.max_length=10",
        "production",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "5 invalid option(s)" in err
    for expected in (
        "training.learning_rate: Input should be less than or equal to 1 (got 5); allowed: > 0",
        "training.batch_size: Input should be a valid integer",
        "model.famly: unknown option (got 'qwen2_vl'); did you mean 'model.family'?",
        "training.optimizer: Input should be 'adamw_torch'",
        "data.max_length: Input should be greater than or equal to 64 (got 10)",
    ):
        assert expected in err, err


def test_an_override_without_equals_says_how_to_write_it(capsys):
    assert main(["check", "quick_test", "--set", "training.learning_rate"]) == 2
    err = capsys.readouterr().err
    assert "SECTION.OPTION=VALUE" in err and "(got training.learning_rate)" in err
    assert "Traceback" not in err
