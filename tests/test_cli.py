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
    ratios: list[float] = Field([0.8, 0.1, 0.1], description="Split ratios.")
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
        _parse(["a", "--ratios", "x", "--training.learning-rate", "-1"])
    message = str(info.value)
    assert "2 invalid option(s)" in message
    assert "ratios.0" in message and "training.learning_rate" in message


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
    argv = "n e1 e2 --size 4 --sizes 1 2 --mode exact --no-flag --frame 3 4"
    opts = _parse_kinds([*argv.split(" "), "--limits.learning-rate", "0.5"])
    assert (opts.name, opts.extras) == ("n", ["e1", "e2"])
    assert opts.size == 4 and opts.sizes == [1, 2] and opts.mode == "exact"
    assert opts.flag is False and opts.frame == (3, 4)
    assert opts.limits == _Inner(learning_rate=0.5)


@pytest.mark.parametrize("argv", [["--size", "3"], ["--sizes", "1", "5"], ["--mode", "slow"]])
def test_a_value_outside_a_literal_is_an_invalid_choice(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        _parse_kinds(argv)
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_tuple_length_is_checked_by_the_model():
    with pytest.raises(OptionsError, match="frame"):
        _parse_kinds(["--frame", "1", "2", "3"])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["convert", "x.zip", "--to", "yolo", "--out", "o"], "invalid choice: 'yolo'"),
        (["trian"], "invalid choice: 'trian'"),
        (["info", "--frames", "f"], "put positional arguments first"),
        (["train"], "the train stage is not built yet"),
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
