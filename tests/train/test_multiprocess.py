"""Multi-process training: the shipped ``accelerate`` launcher configs, and ``train`` run in two
processes by ``accelerate launch`` on the CPU (gloo), the same code path as DDP on GPUs.

``accelerate launch --cpu --num_processes 2`` starts ONE process in accelerate 1.15 (several CPU
processes need mpirun there); ``--multi_gpu --num_processes 2`` on a machine without a GPU starts
two through torchrun, and ``hardware.device: cpu`` makes them talk over gloo. The test launches with
the shipped ``ddp.yaml`` that way, so the file users launch with is the one tested.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from argparse import Namespace
from pathlib import Path

import pytest
import yaml

from sam2_finetune.errors import OptionsError
from sam2_finetune.train.config import list_presets, load_config
from sam2_finetune.train.loading import ACCELERATE_DIR

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "sample_data"
CONFIGS = sorted(ACCELERATE_DIR.glob("*.yaml"))


def test_every_scenario_has_a_launcher_config():
    names = {p.stem for p in CONFIGS}
    assert names == {"ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3", "multi_node"}


def test_launcher_configs_ship_in_the_wheel():
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["sam2_finetune"]
    for config_file in CONFIGS:
        name = config_file.relative_to(ROOT / "sam2_finetune").as_posix()
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name


def test_launcher_configs_are_not_training_presets():
    assert not [name for name in list_presets() if name.startswith("accelerate")]
    with pytest.raises(OptionsError, match=r"accelerate launch --config_file"):
        load_config(preset="accelerate/ddp")


def launch_args(config_file: Path) -> Namespace:
    """What ``accelerate launch --config_file FILE x.py`` hands its launchers: the parser's
    defaults with the file's values merged in, as ``accelerate launch`` merges them (nested
    ``fsdp_config`` keys get an ``fsdp_`` prefix). Refuses keys the launcher has no argument for:
    it would ignore them silently."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    cluster = load_config_from_file(str(config_file))  # refuses unknown top-level keys
    args = launch_command_parser().parse_args(["--config_file", str(config_file), "x.py"])
    unknown = []
    for name, value in vars(cluster).items():
        if isinstance(value, dict):
            for key, item in value.items():
                if name == "fsdp_config" and not key.startswith("fsdp_"):
                    key = f"fsdp_{key}"
                if key != "dynamo_backend" and not hasattr(args, key):
                    unknown.append(f"{name}.{key}")
                setattr(args, key, item)
        elif name not in ("compute_environment", "distributed_type") and value is not None:
            setattr(args, name, value)
    assert not unknown, f"{config_file.name}: accelerate launch has no argument for {unknown}"
    args.use_deepspeed = cluster.distributed_type.value == "DEEPSPEED"
    args.use_fsdp = cluster.distributed_type.value == "FSDP"
    args.multi_gpu = cluster.distributed_type.value == "MULTI_GPU"
    args.dynamo_backend = "no"
    args.deepspeed_fields_from_accelerate_config = ",".join(cluster.deepspeed_config)
    return args


@pytest.mark.parametrize("config_file", CONFIGS, ids=lambda p: p.stem)
def test_accelerate_accepts_each_launcher_config(config_file):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file

    cluster = load_config_from_file(str(config_file))
    assert isinstance(cluster, ClusterConfig)
    # Precision is the training config's (training.precision): a launcher value would replace it.
    assert cluster.mixed_precision == "no"
    text = config_file.read_text(encoding="utf-8")
    assert text.startswith("#") and "accelerate launch --config_file" in text  # says how to use it
    launch_args(config_file)


def fsdp_plugin(config_file: Path, monkeypatch):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    args = launch_args(config_file)
    args.main_process_port = 0  # a free port: the check must not depend on 29500 being free
    env = prepare_multi_gpu_env(args)
    for key in [k for k in env if k.startswith("FSDP_")]:
        monkeypatch.setenv(key, env[key])
    return env, FullyShardedDataParallelPlugin()


def test_fsdp_config_fully_shards_and_saves_loadable_weights(monkeypatch):
    env, plugin = fsdp_plugin(ACCELERATE_DIR / "fsdp.yaml", monkeypatch)
    assert env["ACCELERATE_USE_FSDP"] == "true"
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True  # full shard
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"
    # FULL_STATE_DICT: the Trainer's save_model writes ordinary safetensors only with it.
    assert "FULL_STATE_DICT" in str(plugin.state_dict_type)


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_configs_parse_into_the_zero_stage_asked(stage, monkeypatch):
    """Checked with accelerate's own DeepSpeedPlugin, which builds the DeepSpeed JSON config
    without importing deepspeed (not installed here): whether DeepSpeed itself accepts that
    config and runs it is not checked."""
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    args = launch_args(ACCELERATE_DIR / f"deepspeed_zero{stage}.yaml")
    args.main_process_port = 0
    _, env = prepare_deepspeed_cmd_env(args)
    for key in [k for k in env if k.startswith("ACCELERATE_")]:
        monkeypatch.setenv(key, env[key])
    plugin = DeepSpeedPlugin()
    zero = plugin.deepspeed_config["zero_optimization"]
    assert zero["stage"] == stage
    # Left to the Trainer, which fills them from the training config.
    assert plugin.deepspeed_config["gradient_accumulation_steps"] == "auto"
    if stage == 3:
        # Without it a ZeRO-3 LoRA run saves an empty adapter.
        assert zero["stage3_gather_16bit_weights_on_model_save"] is True
        assert plugin.zero3_save_16bit_model is True and plugin.zero3_init_flag is True


def test_multi_node_config_names_the_fields_a_user_fills(monkeypatch):
    from accelerate.utils.launch import prepare_multi_gpu_env

    config_file = ACCELERATE_DIR / "multi_node.yaml"
    data = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    assert data["num_machines"] == 2 and data["machine_rank"] == 0
    text = config_file.read_text(encoding="utf-8")
    for field in ("main_process_ip", "main_process_port", "machine_rank", "num_processes"):
        assert f"# - {field}:" in text, field
    args = launch_args(config_file)
    args.machine_rank = 1  # the second machine: no port check on this one
    prepare_multi_gpu_env(args)
    assert (args.nnodes, args.node_rank, args.nproc_per_node) == ("2", 1, "8")
    assert args.master_addr == data["main_process_ip"]


# --- Two processes -------------------------------------------------------------------------

STOP_SCRIPT = textwrap.dedent(
    """
    import os, signal
    from types import SimpleNamespace

    import torch.distributed as dist
    from transformers import TrainerControl, TrainerState

    from sam2_finetune.train.callbacks import InterruptCallback

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    callback = InterruptCallback()
    if rank == 0:
        callback.interrupted = "SIGTERM"  # only rank 0 has seen the signal at this step
    control = TrainerControl()
    args = SimpleNamespace(world_size=2, device="cpu")
    callback.on_step_end(args, TrainerState(), control)
    print(rank, callback.interrupted, control.should_training_stop, control.should_save)
    dist.destroy_process_group()
    """
)


@pytest.mark.slow
def test_a_signal_one_rank_saw_stops_every_rank_at_the_same_step(tmp_path):
    """Two real gloo processes: rank 0 was signalled, rank 1 not; both stop and save."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = tmp_path / "stop.py"
    script.write_text(STOP_SCRIPT)
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"}
    env["PYTHONPATH"] = str(ROOT)
    ranks = [
        subprocess.Popen(
            [sys.executable, str(script)],
            env={**env, "RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    outputs = [process.communicate(timeout=120) for process in ranks]
    assert [p.returncode for p in ranks] == [0, 0], [err[-2000:] for _, err in outputs]
    assert [out.split() for out, _ in outputs] == [
        ["0", "SIGTERM", "True", "True"],
        ["1", "SIGTERM", "True", "True"],
    ]


# Runs `sam2-finetune train` (the CLI's own main) in each process, and records what that process
# did: its trainable weights after training, the frames its collator saw, and every file it opened
# for writing, created, renamed or deleted under the run folder (Python's audit hooks see the
# writes made from Python; safetensors writes from Rust, which the checks below cover by the files
# found on disk).
DRIVER = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path

    import torch
    import transformers

    from sam2_finetune.cli import main
    from sam2_finetune.train.collator import VisionLanguageCollator

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    dump = Path(os.environ["DUMP_DIR"])
    run_dir = os.path.realpath(os.environ["RUN_DIR"])
    writes, frames = [], []

    def audit(event, args):
        path = None
        if event == "open" and args[0] is not None and not isinstance(args[0], int):
            mode, flags = args[1] or "", args[2] or 0
            if any(c in mode for c in "wax+") or flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
                path = args[0]
        elif event in ("os.mkdir", "os.remove", "os.rmdir", "shutil.rmtree"):
            path = args[0]
        elif event == "os.rename":
            path = args[1]
        if path is not None and not isinstance(path, int):
            path = os.path.realpath(os.fsdecode(path))
            if path.startswith(run_dir + os.sep) or path == run_dir:
                writes.append(event + " " + os.path.relpath(path, run_dir))

    sys.addaudithook(audit)

    evaluating = []
    collate = VisionLanguageCollator.__call__
    def recording_collate(self, features):
        if not evaluating:
            frames.extend(f["image_id"] for f in features)
        return collate(self, features)
    VisionLanguageCollator.__call__ = recording_collate

    evaluation_loop = transformers.Trainer.evaluation_loop
    def flagged_evaluation_loop(self, *args, **kwargs):
        evaluating.append(True)
        try:
            return evaluation_loop(self, *args, **kwargs)
        finally:
            evaluating.pop()
    transformers.Trainer.evaluation_loop = flagged_evaluation_loop

    fit = transformers.Trainer.train
    def fit_and_dump(self, *args, **kwargs):
        output = fit(self, *args, **kwargs)
        weights = {
            name: p.detach().cpu().clone()
            for name, p in self.model.named_parameters()
            if p.requires_grad
        }
        torch.save(weights, dump / f"weights-{rank}.pt")
        return output
    transformers.Trainer.train = fit_and_dump

    code = main(sys.argv[1:])
    (dump / f"record-{rank}.json").write_text(json.dumps({"writes": writes, "frames": frames}))
    sys.exit(code)
    """
)


@pytest.mark.slow
def test_two_processes_train_one_model_and_only_rank_0_writes(raw_dataset, tmp_path):
    torch = pytest.importorskip("torch")
    run_dir, dump = tmp_path / "run", tmp_path / "dump"
    dump.mkdir()
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    accelerate = Path(sys.executable).parent / "accelerate"
    command = [
        str(accelerate),
        "launch",
        "--config_file",
        str(ACCELERATE_DIR / "ddp.yaml"),
        "--num_processes",
        "2",
        "--main_process_port",
        "0",  # a free port: parallel test workers must not collide
        "--num_cpu_threads_per_process",
        "1",
        str(driver),
        "train",
        "quick_test",
        *("--set", f"data.dataset={raw_dataset}"),
        *("--set", f"output.run_dir={run_dir}"),
        *("--set", "hardware.device=cpu"),
        *("--set", "hardware.num_processes=2"),
        *("--set", "training.max_steps=4"),
        *("--set", "training.save_steps=2"),
        *("--set", "training.eval_steps=2"),
        *("--set", "training.logging_steps=1"),
        *("--set", "training.batch_size=1"),
        "--json",
    ]
    env = {
        **os.environ,
        "DUMP_DIR": str(dump),
        "RUN_DIR": str(run_dir),
        "CUDA_VISIBLE_DEVICES": "",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
        # A fresh cache: the tiny model is built inside the launched run (rank 0 builds it).
        "SAM2_FINETUNE_CACHE": str(tmp_path / "cache"),
    }
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]

    # Two processes ran, and the summary (printed once: rank 0 prints it) says so.
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["global_step"] == 4
    assert done.stdout.count('"global_step"') == 1
    records = [json.loads((dump / f"record-{r}.json").read_text()) for r in (0, 1)]

    # One model: DDP shards the data (each rank trains on other frames) and averages the
    # gradients, so both ranks end with the same weights, moved away from LoRA's zero B matrices.
    seen = [set(r["frames"]) for r in records]
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    weights = [torch.load(dump / f"weights-{r}.pt") for r in (0, 1)]
    assert weights[0].keys() == weights[1].keys() and weights[0]
    for name in weights[0]:
        assert torch.equal(weights[0][name], weights[1][name]), name
    assert any(t.abs().sum() > 0 for n, t in weights[0].items() if "lora_B" in n)
    # ... and that model is the one saved in best/ (the best checkpoint, loaded at the end).
    from safetensors.torch import load_file

    saved = load_file(run_dir / "best" / "adapter_model.safetensors")
    held = {n.replace(".default", ""): t for n, t in weights[0].items()}
    assert len(saved) == len(held)
    for name, tensor in saved.items():
        assert torch.equal(tensor, held[name]), name

    # Logged once: each training step and each evaluation appears once in metrics.jsonl.
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [1, 2, 3, 4]
    assert [r["step"] for r in logged if "eval_loss" in r] == [0, 2, 4]
    assert len(list((run_dir / "tensorboard").rglob("events.out.tfevents.*"))) == 1

    # Only rank 0 wrote the run folder: rank 1 wrote nothing but the Trainer's own per-rank RNG
    # state in each checkpoint (what resuming restores on rank 1).
    rank1 = [
        w
        for w in records[1]["writes"]
        if not re.fullmatch(r"os.mkdir checkpoints(/checkpoint-\d+)?|open .*/rng_state_1.pth", w)
    ]
    assert rank1 == [], records[1]["writes"]
    assert any(w.endswith("summary.json") for w in records[0]["writes"])
    for name in ("config.yaml", "data_manifest.json", "summary.json", "metrics.jsonl"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "best" / "best.json").is_file()
    # No temporary or half-replaced folders left behind, by either rank.
    leftovers = [p for p in run_dir.rglob("*") if ".tmp-" in p.name or ".old-" in p.name]
    assert leftovers == []
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "best",
        "checkpoints",
        "config.yaml",
        "data",
        "data_manifest.json",
        "metrics.jsonl",
        "sam2_finetune.json",
        "summary.json",
        "tensorboard",
    ]
