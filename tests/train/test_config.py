import json
import re
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from sam2_finetune.answer_formats import ANSWER_FORMATS, TASKS
from sam2_finetune.errors import OptionsError
from sam2_finetune.models.memory import OPTIMIZER_BYTES_PER_PARAMETER, estimate_memory
from sam2_finetune.models.registry import FAMILIES, image_tokens
from sam2_finetune.train import config as config_module
from sam2_finetune.train.config import (
    PRESETS_DIR,
    TrainConfig,
    allowed_values,
    config_source,
    dump_config,
    list_presets,
    load_config,
    parse_override,
    save_resolved_config,
    validate_config,
)

ROOT = Path(__file__).resolve().parents[2]
PRESET_FILES = sorted(
    p for p in PRESETS_DIR.rglob("*.yaml") if p.parent.name not in ("accelerate", "pipelines")
)
PRESETS = [p.relative_to(PRESETS_DIR).with_suffix("").as_posix() for p in PRESET_FILES]

MINIMAL = {
    "model": {"family": "qwen2_vl"},
    "data": {"dataset": "data/splits"},
    "training": {"epochs": 1},
}


def write(tmp_path: Path, data, name="config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def problems_of(data) -> str:
    with pytest.raises(OptionsError) as info:
        validate_config(data)
    return str(info.value)


# --- Presets -------------------------------------------------------------------------------


def test_presets_exist_for_every_family_and_purpose():
    assert {"quick_test", "production", "ultra_low_memory"} <= set(PRESETS)
    per_family = {p.split("/")[0] for p in PRESETS if "/" in p}
    assert per_family == set(FAMILIES)
    assert list_presets() == PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads_and_validates(name):
    by_name = load_config(preset=name)
    by_path = load_config(PRESETS_DIR / f"{name}.yaml")
    assert by_name == by_path
    assert by_name.description
    if "/" in name:
        family = FAMILIES[name.split("/")[0]]
        assert by_name.model.family == family.name
        # Each family preset writes answers in the family's own format and names a real
        # checkpoint of that family.
        assert by_name.data.answer_format == family.answer_format
        assert by_name.model.checkpoint in {c.name for c in family.checkpoints}


def test_quick_test_is_a_tiny_offline_cpu_run_on_sample_data():
    from sam2_finetune.models.tiny import TINY_FAMILIES

    config = load_config(preset="quick_test")
    family = config.model.checkpoint.removeprefix("tiny:")
    assert config.model.checkpoint.startswith("tiny:") and family in TINY_FAMILIES
    assert config.hardware.device == "cpu" and config.model.quantization == "none"
    assert config.data.dataset == Path("sample_data")
    assert (ROOT / "sample_data").is_dir()
    assert config.training.max_steps is not None and config.training.max_steps <= 50


def _preset_estimate(name: str) -> float:
    config = load_config(preset=name)
    family = FAMILIES[config.model.family]
    checkpoint = next(c for c in family.checkpoints if c.name == config.model.checkpoint)
    data = config.data
    tokens = image_tokens(
        checkpoint.image, 1280, 720, min_pixels=data.min_pixels, max_pixels=data.max_pixels
    )
    return (
        estimate_memory(
            checkpoint.architecture,
            quantization=config.model.quantization,
            lora_rank=config.model.lora_rank,
            batch_size=config.training.batch_size,
            seq_len=min(256, data.max_length - tokens),
            image_tokens=tokens,
            gradient_checkpointing=config.training.gradient_checkpointing,
            optimizer=config.training.optimizer,
            precision="bf16",
        ).total
        / 2**30
    )


def test_ultra_low_memory_fits_an_8_gb_gpu():
    config = load_config(preset="ultra_low_memory")
    assert config.model.quantization == "4bit" and config.training.batch_size == 1
    assert config.training.gradient_accumulation_steps > 1
    assert config.training.gradient_checkpointing and config.data.max_pixels is not None
    assert _preset_estimate("ultra_low_memory") < 7.5


def test_production_is_a_7b_qlora_that_fits_24_gb():
    config = load_config(preset="production")
    assert config.model.quantization == "4bit" and config.model.method == "lora"
    assert 7 < FAMILIES[config.model.family].checkpoints[0].billions < 9
    assert _preset_estimate("production") < 22


# --- Overrides -----------------------------------------------------------------------------


def test_overrides_are_yaml_values_at_dotted_paths():
    config = load_config(
        preset="quick_test",
        overrides=[
            "training.learning_rate=1e-4",
            "training.gradient_checkpointing=true",
            "data.task_mix={detect: 2, count: 1}",
            "output.loggers=[]",
            "model.lora_targets=[q_proj, v_proj]",
            "training.eval_steps=null",
            "training.metric_for_best_model=null",
        ],
    )
    assert config.training.learning_rate == 1e-4
    assert config.training.gradient_checkpointing is True
    assert config.data.task_mix == {"detect": 2, "count": 1}
    assert config.output.loggers == []
    assert config.model.lora_targets == ["q_proj", "v_proj"]
    assert config.training.eval_steps is None


def test_a_file_merges_over_a_preset_and_overrides_win(tmp_path):
    path = write(tmp_path, {"training": {"batch_size": 4, "seed": 7}})
    config = load_config(path, overrides=["training.seed=9"], preset="quick_test")
    assert config.training.batch_size == 4 and config.training.seed == 9
    assert config.model.checkpoint == "tiny:smolvlm"  # from the preset


def test_yaml_1_1_exponents_are_read_as_floats(tmp_path):
    path = write(tmp_path, "model: {family: llava}\ndata: {dataset: d}\n"
                 "training: {epochs: 1, learning_rate: 2e-4}\n")  # fmt: skip
    assert load_config(path).training.learning_rate == 2e-4
    assert parse_override("training.learning_rate=3E-5")[1] == 3e-5
    assert parse_override("model.checkpoint=1e-model")[1] == "1e-model"


@pytest.mark.parametrize("item", ["training.learning_rate", "=3", "training..seed=1"])
def test_malformed_overrides_say_how_to_write_them(item):
    with pytest.raises(OptionsError, match=r"SECTION\.OPTION=VALUE"):
        load_config(preset="quick_test", overrides=[item])


def test_override_into_a_value_is_refused():
    with pytest.raises(OptionsError, match="is a value"):
        load_config(preset="quick_test", overrides=["training.seed.x=1"])


# --- Errors: all at once, with path, value and the allowed range -----------------------------


def test_every_invalid_field_is_reported_at_once_with_path_value_and_range():
    message = problems_of(
        {
            "model": {"family": "qwen2_vl", "lora_rank": 0, "quantization": "3bit"},
            "data": {"dataset": "d", "max_length": 10},
            "training": {"epochs": 1, "learning_rate": -1, "optimizer": "adam"},
            "hardware": {"num_processes": 0},
        }
    )
    assert "6 invalid option(s)" in message
    expected = [
        ("model.lora_rank", "(got 0)", "allowed: >= 1 and <= 1024"),
        ("model.quantization", "(got '3bit')", "'none', '8bit' or '4bit'"),
        ("data.max_length", "(got 10)", ">= 64 and <= 131072"),
        ("training.learning_rate", "(got -1)", "> 0 and <= 1"),
        ("training.optimizer", "(got 'adam')", "adamw_torch"),
        ("hardware.num_processes", "(got 0)", ">= 1 and <= 64"),
    ]
    lines = message.splitlines()
    for path, value, rule in expected:
        line = next(x for x in lines if x.startswith(f"  - {path}:"))
        assert value in line and rule in line, line


def test_unknown_keys_name_the_closest_valid_key():
    message = problems_of(
        {
            **MINIMAL,
            "training": {"epochs": 1, "learning_rat": 1e-4},
            "model": {"family": "qwen2_vl", "learning_rate": 1e-4},
            "trainer": {},
        }
    )
    assert "training.learning_rat: unknown option" in message
    assert "did you mean 'training.learning_rate'" in message
    assert "model.learning_rate: unknown option" in message  # right name, wrong section
    assert message.count("did you mean 'training.learning_rate'") == 2
    assert "trainer: unknown option (got {}); did you mean 'training'" in message


def test_unknown_set_key_names_the_closest_valid_key():
    with pytest.raises(OptionsError, match=r"did you mean 'training\.batch_size'"):
        load_config(preset="quick_test", overrides=["training.batchsize=2"])


def test_missing_sections_and_family_choices():
    message = problems_of({"model": {"family": "qwen3_vl"}})
    assert "data: required option is missing" in message
    assert "training: required option is missing" in message
    family_line = next(x for x in message.splitlines() if "model.family" in x)
    assert "(got 'qwen3_vl')" in family_line and "'llava', 'qwen2_vl'" in family_line


def test_yaml_syntax_errors_name_the_file_and_line(tmp_path):
    path = write(tmp_path, "model:\n  family: llava\ndata:\n  dataset: [unclosed\ntraining: {}\n")
    with pytest.raises(OptionsError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:5:")
    assert "the config is not valid YAML" in str(info.value)


def test_a_key_written_twice_is_refused_with_both_lines(tmp_path):
    """YAML keeps the last of two equal keys: a second `training:` would silently drop the
    first section's options."""
    path = write(
        tmp_path,
        "model: {family: llava}\ndata: {dataset: d}\ntraining:\n  epochs: 1\n"
        "  learning_rate: 1e-4\ntraining:\n  epochs: 2\n",
    )
    with pytest.raises(OptionsError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}:6:1: duplicate key 'training' (first on line 3)")
    assert "Fix:" in message


def test_non_mapping_and_missing_files(tmp_path):
    with pytest.raises(OptionsError, match="must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(OptionsError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(OptionsError, match="no configuration given"):
        load_config()


def test_presets_by_name_path_and_typo(tmp_path):
    assert config_source("quick_test") == PRESETS_DIR / "quick_test.yaml"
    assert config_source("qwen2_5_vl/7b_qlora.yaml") == PRESETS_DIR / "qwen2_5_vl/7b_qlora.yaml"
    own = write(tmp_path, MINIMAL)
    assert config_source(str(own)) == own
    with pytest.raises(OptionsError, match="did you mean 'quick_test'"):
        config_source("quick-test")
    with pytest.raises(OptionsError, match="no such config file"):
        config_source(str(tmp_path / "missing.yaml"))


def test_a_folder_or_an_unknown_name_gets_a_plain_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OptionsError) as info:
        config_source(str(tmp_path))
    message = str(info.value)
    assert "is a folder, not a YAML config file" in message and str(tmp_path) in message
    (tmp_path / "production").mkdir()  # a folder named like a preset: the preset wins
    assert config_source("production") == PRESETS_DIR / "production.yaml"
    with pytest.raises(OptionsError) as info:
        config_source("zzzz")
    assert "Fix: name one of the presets above, or give a config file path." in str(info.value)


def test_a_lora_target_regex_that_does_not_compile_is_refused():
    message = problems_of({**MINIMAL, "model": {"family": "qwen2_vl", "lora_targets": "(q_proj"}})
    line = next(x for x in message.splitlines() if x.startswith("  - model.lora_targets:"))
    assert "not a valid regular expression" in line and "(got '(q_proj')" in line
    # A list of suffixes is not a regex, and the family default compiles.
    assert validate_config({**MINIMAL, "model": {"family": "qwen2_vl", "lora_targets": ["(x"]}})
    with pytest.raises(OptionsError, match=r"model\.lora_targets"):
        load_config(preset="quick_test", overrides=["model.method=lora", "model.lora_targets=["])


def test_an_option_of_several_types_is_one_line_with_the_value():
    """lora_targets is a regex or a list: one problem, at the option's own path, with the value
    (not one line per accepted type under model.lora_targets.str / .list[str])."""
    message = problems_of(
        {**MINIMAL, "model": {"family": "qwen2_vl", "lora_targets": {"a": 1}, "lora_rank": 0}}
    )
    assert "2 invalid option(s)" in message
    line = next(x for x in message.splitlines() if "lora_targets" in x)
    assert line == (
        "  - model.lora_targets: Input should be a valid string or a valid list (got {'a': 1})"
    )


def test_a_tiny_checkpoint_never_suggests_a_tiny_remote_code_model():
    message = problems_of(
        {
            **MINIMAL,
            "model": {"family": "cogvlm", "checkpoint": "tiny:smolvlm", "trust_remote_code": True},
        }
    )
    assert "tiny:cogvlm" not in message
    assert "no tiny offline model exists for 'cogvlm'" in message


# --- Rules between fields ------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, path, words",
    [
        ({"training": {"epochs": None}}, "training.epochs", "neither is set"),
        ({"training": {"epochs": 1, "max_steps": 5}}, "training.max_steps", "both are set"),
        (
            {"training": {"epochs": 1, "early_stopping_patience": 3}},
            "training.early_stopping_patience",
            "set training.eval_steps",
        ),
        (
            {"training": {"epochs": 1, "metric_for_best_model": "loss"}},
            "training.metric_for_best_model",
            "needs evaluation",
        ),
        (
            {
                "training": {
                    "epochs": 1,
                    "eval_steps": 30,
                    "save_steps": 100,
                    "metric_for_best_model": "loss",
                }
            },
            "training.save_steps",
            "multiple of training.eval_steps (30)",
        ),
        (
            {"training": {"epochs": 1, "early_stopping_threshold": 0.1}},
            "training.early_stopping_threshold",
            "no effect",
        ),
        ({"model": {"family": "qwen2_vl", "checkpoint": "tiny:llava"}}, "model.checkpoint", "tiny"),
        (
            {"model": {"family": "smolvlm", "checkpoint": "HuggingFaceTB/SmolVLM-256M-Instruct"}},
            "model.checkpoint",
            "belongs to family 'idefics3'",
        ),
        ({"model": {"family": "cogvlm"}}, "model.trust_remote_code", "trust_remote_code=true"),
        (
            {
                "model": {
                    "family": "minicpm_v",
                    "trust_remote_code": True,
                    "checkpoint": "tiny:minicpm_v",
                }
            },
            "model.checkpoint",
            "no tiny offline model",
        ),
        (
            {"model": {"family": "qwen2_vl", "method": "full", "quantization": "4bit"}},
            "model.quantization",
            "method 'lora'",
        ),
        (
            {"model": {"family": "llava"}, "data": {"dataset": "d", "max_pixels": 200704}},
            "data.max_pixels",
            "applies only to families ['qwen2_vl', 'qwen2_5_vl']",
        ),
        (
            {"data": {"dataset": "d", "min_pixels": 400000, "max_pixels": 200704}},
            "data.min_pixels",
            "<= max_pixels",
        ),
        (
            {"data": {"dataset": "d", "task_mix": {"segment": 1}}},
            "data.task_mix.segment",
            "no polygon syntax",
        ),
        (
            {"data": {"dataset": "d", "task_mix": {"detect": 0}}},
            "data.task_mix",
            "weight > 0",
        ),
        (
            {
                "data": {"dataset": "d", "eval_split": None},
                "training": {"epochs": 1, "eval_steps": 5},
            },
            "data.eval_split",
            "evaluation split",
        ),
    ],
)
def test_cross_field_rules(changes, path, words):
    data = {**MINIMAL, **changes}
    message = problems_of(data)
    line = next((x for x in message.splitlines() if x.startswith(f"  - {path}:")), None)
    assert line is not None, message
    assert words in line, line


def test_several_rule_violations_in_different_sections_are_reported_together():
    message = problems_of(
        {
            "model": {"family": "cogvlm", "checkpoint": "tiny:llava"},
            "data": {"dataset": "d"},
            "training": {"epochs": 1, "max_steps": 3, "metric_for_best_model": "loss"},
        }
    )
    for path in (
        "model.checkpoint",
        "model.trust_remote_code",
        "training.max_steps",
        "training.metric_for_best_model",
    ):
        assert f"  - {path}:" in message


# --- Defaults by family, resolved config -----------------------------------------------------


def test_family_defaults_are_filled_in():
    config = validate_config({**MINIMAL, "model": {"family": "paligemma"}})
    assert config.model.checkpoint == "google/paligemma2-3b-pt-224"
    assert config.data.answer_format == "paligemma"
    assert config.model.lora_targets == FAMILIES["paligemma"].lora_target_modules
    assert "segment" not in config.data.task_mix  # paligemma's format has no polygons
    assert sum(config.data.task_mix.values()) == pytest.approx(1)
    full = validate_config({**MINIMAL, "model": {"family": "llava", "method": "full"}})
    assert full.model.lora_targets is None


@pytest.mark.parametrize("name", ["quick_test", "production", "cogvlm/17b_qlora"])
def test_resolved_config_is_saved_and_reloads_identically(tmp_path, name):
    config = load_config(preset=name, overrides=["training.seed=5"])
    path = save_resolved_config(config, tmp_path / "run")
    assert path == tmp_path / "run" / "config.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Resolved training config")
    reloaded = load_config(path)
    assert reloaded == config
    assert dump_config(reloaded) == dump_config(config)
    # Every option is spelled out, defaults included.
    saved = yaml.safe_load(text)
    assert set(saved) == set(TrainConfig.model_fields)
    assert set(saved["training"]) == set(config_module.TrainingSection.model_fields)
    assert saved["model"]["checkpoint"] == config.model.checkpoint


def test_allowed_values_reads_bounds_and_choices():
    assert allowed_values(TrainConfig, ("training", "warmup_ratio")) == ">= 0 and < 1"
    assert allowed_values(TrainConfig, ("model", "method")) == "one of: lora, full"
    assert allowed_values(TrainConfig, ("data", "task_mix", "detect")) == ">= 0 and <= 1000"
    assert "one of: tensorboard, wandb, mlflow" in allowed_values(
        TrainConfig, ("output", "loggers", 0)
    )
    assert allowed_values(TrainConfig, ("nope",)) is None


def _docs_default(info) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    return f"`{value if isinstance(value, (str, list)) else json.dumps(value)}`"


@pytest.mark.parametrize(
    "section",
    [n for n, f in TrainConfig.model_fields.items() if isinstance(f.annotation, type) and
     issubclass(f.annotation, BaseModel)],
)  # fmt: skip
def test_docs_option_tables_match_the_model(section):
    """docs/config.md's option tables are what the model accepts: no option missing, renamed,
    or documented with a stale default, range or description."""
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    block = re.search(rf"### `{section}`\n\n(.*?)(?:\n\n|\Z)", text, re.S)
    assert block, f"docs/config.md has no table for {section}"
    rows = [
        [cell.strip() for cell in line.strip("|").split(" | ")]
        for line in block.group(1).splitlines()[2:]
    ]
    fields = TrainConfig.model_fields[section].annotation.model_fields
    assert [row[0].strip("`") for row in rows] == list(fields)
    for name, default, allowed, what in rows:
        info = fields[name.strip("`")]
        assert default == _docs_default(info), name
        assert allowed == (allowed_values(TrainConfig, (section, name.strip("`"))) or ""), name
        assert what == info.description, name


# --- Literals kept in step with the registries ------------------------------------------------


def test_literals_match_the_registries():
    assert list(typing.get_args(config_module.Family)) == list(FAMILIES)
    assert set(typing.get_args(config_module.AnswerFormatName)) == set(ANSWER_FORMATS)
    assert tuple(typing.get_args(config_module.Task)) == tuple(TASKS)
    assert set(typing.get_args(config_module.Optimizer)) == set(OPTIMIZER_BYTES_PER_PARAMETER)


@pytest.mark.slow
def test_optimizer_and_scheduler_names_are_transformers_names():
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    assert set(typing.get_args(config_module.Optimizer)) <= {o.value for o in OptimizerNames}
    assert set(typing.get_args(config_module.Scheduler)) <= {s.value for s in SchedulerType}


def test_loading_names_stay_importable_from_train_config_and_train():
    """The loading half moved to train/loading.py; callers import it where they always did."""
    import sam2_finetune.train as train
    from sam2_finetune.train import loading

    for name in ("PRESETS_DIR", "list_presets", "preset_path", "config_source", "read_yaml"):
        assert getattr(config_module, name) is getattr(loading, name)
        assert getattr(train, name) is getattr(loading, name)
    for name in ("load_config", "save_resolved_config", "validate_config", "TrainConfig"):
        assert getattr(train, name) is getattr(config_module, name)


def test_config_errors_use_the_shared_formatter_without_pydantic_prefixes(tmp_path):
    data = {**MINIMAL, "training": {"epochs": 1, "max_steps": 5}}
    with pytest.raises(OptionsError) as info:
        validate_config(data, "my.yaml")
    message = str(info.value)
    assert message.startswith("my.yaml: 1 invalid option(s):\n  - training.max_steps: set exactly")
    assert "Value error" not in message and "docs/config.md" in message
