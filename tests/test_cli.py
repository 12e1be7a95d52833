import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from sam2_finetune.cli import add_model_arguments, main, validate_options
from sam2_finetune.errors import OptionsError


class _Inner(BaseModel):
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")


class _Options(BaseModel):
    inputs: list[str] = Field(description="Inputs.", json_schema_extra={"positional": True})
    ratios: list[float] = Field(
        [0.8, 0.1, 0.1], description="Split ratios.", json_schema_extra={"nargs": 3}
    )
    tags: list[str] = Field([], description="Tags.")
    overwrite: bool = Field(False, description="Replace.")
    training: _Inner = _Inner()


def _parse(argv):
    import argparse

    parser = argparse.ArgumentParser()
    add_model_arguments(parser, _Options)
    from sam2_finetune.cli import _nest

    return validate_options(_Options, _nest(vars(parser.parse_args(argv))), "test")


def test_generated_flags_follow_the_model():
    opts = _parse(
        [
            "a",
            "b",
            "--ratios",
            "0.7",
            "0.2",
            "0.1",
            "--overwrite",
            "--training.learning-rate",
            "1e-4",
        ]
    )
    assert opts.inputs == ["a", "b"]
    assert opts.ratios == [0.7, 0.2, 0.1]
    assert opts.overwrite is True
    assert opts.training.learning_rate == 1e-4


def test_defaults_come_from_the_model():
    opts = _parse(["a"])
    assert opts.ratios == [0.8, 0.1, 0.1] and opts.overwrite is False
    assert opts.training.learning_rate == 2e-4


def test_every_invalid_option_is_reported_at_once():
    with pytest.raises(OptionsError) as info:
        _parse(["a", "--ratios", "x", "0.5", "0.5", "--training.learning-rate", "-1"])
    message = str(info.value)
    assert "2 invalid option(s)" in message
    # Named as typed, with the value as typed.
    assert "  - --ratios: Input should be a valid number" in message and "(got x)" in message
    assert "  - --training.learning-rate: Input should be greater than 0 (got -1)" in message


def test_user_errors_print_one_line_and_no_traceback(capsys):
    assert main(["info", "/does/not/exist.zip"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: /does/not/exist.zip: no such file")
    assert "Traceback" not in err


def test_data_commands_do_not_import_torch(tmp_path):
    code = (
        "import sys\n"
        "from sam2_finetune.cli import main\n"
        "try:\n    main(['info', '--help'])\nexcept SystemExit:\n    pass\n"
        "loaded = [m for m in ('torch', 'transformers', 'datasets') if m in sys.modules]\n"
        "print(loaded)\n"
        "sys.exit(3 if loaded else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_output_piped_into_head_ends_quietly(tmp_path):
    sample = sorted((Path(__file__).resolve().parent.parent / "sample_data").glob("*.zip"))
    script = (
        f"{sys.executable} -m sam2_finetune info {' '.join(map(str, sample))} --json | head -c 10"
    )
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    assert result.stdout.startswith("[")
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr


# --------------------------------------------------------------------------------------------
# The command as a new user meets it
# --------------------------------------------------------------------------------------------


def test_no_arguments_lists_every_command(capsys):
    from sam2_finetune.cli import COMMANDS

    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: sam2-finetune")
    for name, (_, help_text) in COMMANDS.items():
        assert name in out and help_text.split()[0] in out


def test_an_unknown_command_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["trian"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'trian'" in err and "'info'" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "name", ["info", "convert", "validate", "split", "leakage", "models", "check", "tiny-model"]
)
def test_every_command_help_renders_every_option(name, capsys):
    from sam2_finetune.cli import COMMANDS, _load, options_model

    assert name in COMMANDS
    with pytest.raises(SystemExit) as exited:
        main([name, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: sam2-finetune {name}")
    model = options_model(_load(COMMANDS[name][0]))
    # The description is the model's docstring, dedented (no stray indentation).
    assert "\n    " not in out.split("\n\n")[1]
    for field_name, info in model.model_fields.items():
        flag = (info.alias or field_name).replace("_", "-")
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if extra.get("positional"):
            assert (info.alias or field_name).upper() in out
        elif isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            for inner in info.annotation.model_fields:
                assert f"--{flag}.{inner.replace('_', '-')}" in out
        else:
            assert f"--{flag}" in out, f"{name}: --{flag} missing from --help"


class _Kinds(BaseModel):
    """Every kind of field.

    Second paragraph, indented in the source.
    """

    name: str | None = Field(None, json_schema_extra={"positional": True})
    extras: list[str] = Field([], json_schema_extra={"positional": True})
    size: Literal[1, 2, 4] = Field(2, description="A size (50% or more).")
    sizes: list[Literal[1, 2]] = Field([1], description="Sizes.")
    mode: Literal["fast", "exact"] = "fast"
    flag: bool = True
    frame: tuple[int, int] = (1, 2)
    limits: _Inner | None = None


def _parse_kinds(argv):
    import argparse

    from sam2_finetune.cli import _nest

    parser = argparse.ArgumentParser()
    add_model_arguments(parser, _Kinds)
    return validate_options(_Kinds, _nest(vars(parser.parse_args(argv))), "test")


def test_literal_positional_bool_tuple_and_optional_nested_fields():
    opts = _parse_kinds([])
    assert opts == _Kinds()
    argv = "n e1 e2 --size 4 --sizes 1 --sizes 2 --mode exact --no-flag --frame 3 4"
    opts = _parse_kinds([*argv.split(" "), "--limits.learning-rate", "0.5"])
    assert (opts.name, opts.extras) == ("n", ["e1", "e2"])
    assert opts.size == 4 and opts.sizes == [1, 2] and opts.mode == "exact"
    assert opts.flag is False and opts.frame == (3, 4)
    assert opts.limits == _Inner(learning_rate=0.5)


@pytest.mark.parametrize(
    "argv", [["--size", "3"], ["--sizes", "1", "--sizes", "5"], ["--mode", "slow"]]
)
def test_a_value_outside_a_literal_is_an_invalid_choice(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        _parse_kinds(argv)
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_fixed_length_option_takes_exactly_its_count(capsys):
    # A tuple takes its arity: a third value is a positional, not a third item.
    opts = _parse_kinds(["--frame", "1", "2", "n", "e1"])
    assert opts.frame == (1, 2) and (opts.name, opts.extras) == ("n", ["e1"])
    with pytest.raises(SystemExit) as exited:
        _parse_kinds(["--frame", "1"])
    assert exited.value.code == 2
    assert "--frame: expected 2 arguments" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["convert", "x.zip", "--to", "yolo", "--out", "o"], "invalid choice: 'yolo'"),
        (["trian"], "invalid choice: 'trian'"),
        (["info", "--frames", "f"], "the following arguments are required: EXPORTS"),
        (["split", "data/hf"], "the following arguments are required: --out"),
        (["split", "data/hf", "--out", "o", "--ratios", "0.8", "0.2"], "expected 3 arguments"),
        (["train"], "the following arguments are required: CONFIG"),
        (["evaluate"], "the following arguments are required: --model, --data, --out"),
    ],
)
def test_usage_errors_are_one_message(argv, expected, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors exit; ours return the status
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err
    assert err.startswith("error: sam2-finetune") and err.count("\n") == 1
    assert "usage:" not in err
    # No hint about multi-value options having taken the positionals: none can.
    assert "took them" not in err and "end the option's values" not in err
    if argv[0] in ("info", "split"):
        assert err.endswith(f"Fix: see `sam2-finetune {argv[0]} --help`.\n")


# --------------------------------------------------------------------------------------------
# Parsing once: no option takes a variable number of values, so none swallows a positional
# --------------------------------------------------------------------------------------------


def test_a_list_option_takes_one_value_per_flag_and_repeats():
    opts = _parse(["--tags", "x", "a", "b", "--tags", "y"])
    assert opts.tags == ["x", "y"] and opts.inputs == ["a", "b"]


def test_positionals_may_come_before_between_or_after_the_options():
    for argv in (
        ["a", "b", "--tags", "x", "--ratios", "0.5", "0.5", "0"],
        ["--tags", "x", "--ratios", "0.5", "0.5", "0", "a", "b"],
        ["--ratios", "0.5", "0.5", "0", "a", "b", "--tags", "x"],
    ):
        opts = _parse(argv)
        assert opts.inputs == ["a", "b"] and opts.tags == ["x"], argv
        assert opts.ratios == [0.5, 0.5, 0.0], argv


def test_double_dash_makes_everything_after_it_positional():
    opts = _parse(["--tags", "x", "--", "-odd-name.zip", "--overwrite"])
    assert opts.inputs == ["-odd-name.zip", "--overwrite"]
    assert opts.tags == ["x"] and opts.overwrite is False


def test_the_commands_read_a_positional_after_a_list_option(capsys):
    sample = Path(__file__).resolve().parent.parent / "sample_data"
    frames = f"street_scene={sample / 'street_scene_frames'}"
    for argv in (
        ["info", "--frames", frames, str(sample / "street_scene.zip"), "--json"],
        ["info", "--json", "--frames", frames, "--", str(sample / "street_scene.zip")],
    ):
        assert main(argv) == 0, argv
        (summary,) = json.loads(capsys.readouterr().out)
        # The frames were taken as raw frames, the ZIP as the export.
        assert summary["file_name"] == "street_scene.mp4"
        assert summary["images_are_overlays"] is False


def test_help_shows_how_list_options_are_written(capsys):
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "EXPORTS [EXPORTS ...]" in out
    assert "Repeat --frames for each value." in out and "Repeat --tasks for each value." in out
    with pytest.raises(SystemExit):
        main(["split", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--ratios RATIOS RATIOS RATIOS" in out and "(default: 0.8 0.1 0.1)" in out


def test_validation_errors_name_the_flag_and_keep_the_value_without_pydantic_words(capsys):
    argv = ["split", "x", "--out", "y", "--ratios", "0.5", "0.6", "0.1", "--gap-seconds", "-1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: sam2-finetune split: 2 invalid option(s):\n")
    assert "  - --ratios: ratios must sum to 1, found 1.2" in err and "(got 0.5 0.6 0.1)" in err
    assert "  - --gap-seconds: Input should be greater than or equal to 0 (got -1)" in err
    assert "Value error" not in err and "ratios.0" not in err
    assert err.endswith(
        "Fix: correct the options above; `sam2-finetune split --help` lists them.\n"
    )
    assert "<command>" not in err


def test_a_malformed_set_item_is_named_as_the_flag(capsys):
    assert main(["check", "quick_test", "--set", "foo"]) == 2
    err = capsys.readouterr().err
    assert "  - --set: an override must look like SECTION.OPTION=VALUE" in err
    assert "(got foo)" in err and "set.0" not in err and "Value error" not in err
    assert "`sam2-finetune check --help`" in err


def test_option_name_spells_flags_positionals_and_nested_options():
    from sam2_finetune.cli import option_name

    assert option_name(_Options, ("ratios", 1)) == "--ratios"
    assert option_name(_Options, ("training", "learning_rate")) == "--training.learning-rate"
    assert option_name(_Options, ("inputs", 0)) == "INPUTS"
    assert option_name(_Kinds, ("frame", 0)) == "--frame"


def test_version_is_the_installed_packages(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"sam2-finetune {version('sam2-finetune')}\n"


# --------------------------------------------------------------------------------------------
# The Makefile
# --------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_help_lists_every_target_and_variable_with_a_line():
    result = subprocess.run(
        ["make", "-s", "-C", str(ROOT), "help"], capture_output=True, text=True, check=True
    )
    makefile = (ROOT / "Makefile").read_text()
    phony = re.search(r"^\.PHONY:(.*?)(?<!\\)\n", makefile, re.S | re.M).group(1)
    targets = phony.replace("\\", " ").split()
    listed = {line.split()[0]: line for line in result.stdout.splitlines() if line[:2] == "  "}
    for target in targets:
        line = next((v for k, v in listed.items() if target in v.split("  ")[1].split()), None)
        assert line is not None and len(line.split()) > 1, f"make help: {target} has no line"
    for variable in ("EXPORTS", "FRAMES", "RATIOS", "OUT", "ARGS", "CONFIG"):
        assert variable in listed, variable


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_passes_each_frames_source_as_its_own_option():
    result = subprocess.run(
        ["make", "-n", "-C", str(ROOT), "convert", "FRAMES=a=x b=y", "EXPORTS=a.zip b.zip"],
        capture_output=True,
        text=True,
        check=True,
    )
    command = next(line for line in result.stdout.splitlines() if " convert " in line)
    assert "--frames a=x --frames b=y a.zip b.zip" in " ".join(command.split())


def test_a_whole_model_rule_naming_its_option_is_named_as_the_flag(capsys):
    """ValidateOptions checks --ratios in a model validator ("ratios: must add up to 1"): the
    line still names the flag, not pydantic's empty location."""
    sample = Path(__file__).resolve().parent.parent / "sample_data" / "street_scene.zip"
    assert main(["validate", str(sample), "--ratios", "0.5", "0.5", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "\n  - --ratios: must add up to 1 (got 1.5)\n" in err
    assert "(options)" not in err and "Value error" not in err


def test_the_package_version_is_the_installed_metadata():
    """pyproject.toml holds the version once; the package and --version read it."""
    from importlib.metadata import version

    import sam2_finetune

    # tomllib is Python 3.11+; the package supports 3.10.
    pyproject = re.search(r'^version = "(.+)"$', (ROOT / "pyproject.toml").read_text(), re.M)
    assert sam2_finetune.__version__ == version("sam2-finetune") == pyproject.group(1)


def test_a_mapping_option_never_takes_the_exports_after_it(tmp_path):
    """``--tasks KEY=VALUE`` takes one item per flag (or a comma list), like the list options."""
    export = Path(__file__).resolve().parent.parent / "sample_data" / "warehouse.zip"
    argv = ["convert", "--to", "llava", "--out", str(tmp_path / "a"), "--tasks", "detect=2"]
    assert main([*argv, "--tasks", "count=1", str(export)]) == 0
    records = json.loads((tmp_path / "a" / "llava.json").read_text())
    assert records and {r["id"].split("/")[0] for r in records} == {"warehouse-0c9f6a37"}
