import subprocess
import sys
from pathlib import Path

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
