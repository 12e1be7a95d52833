"""Split options: the ratios' validation, every bad option at once."""

from __future__ import annotations

import pytest

from sam2_finetune.cli import main
from sam2_finetune.split import SplitOptions


@pytest.mark.parametrize(
    "ratios, message",
    [
        ([0.8, 0.1], "give 3 ratios"),
        ([0.8, 0.3, -0.1], ">= 0"),
        ([0.8, 0.1, 0.2], "sum to 1"),
        ([float("nan"), 0.5, 0.5], ">= 0"),
    ],
)
def test_bad_ratios_are_refused(tmp_path, ratios, message):
    with pytest.raises(ValueError, match=message):
        SplitOptions(dataset=tmp_path, out=tmp_path / "out", ratios=ratios)


def test_ratios_may_hold_zeros():
    assert SplitOptions(dataset="a", out="b", ratios=[1, 0, 0]).ratios == [1, 0, 0]
    assert SplitOptions(dataset="a", out="b", ratios=[0.7, 0.2, 0.1]).ratios == [0.7, 0.2, 0.1]


def test_cli_reports_every_bad_option_at_once(capsys):
    code = main(
        ["split", "x", "--out", "y", "--ratios", "0.5", "0.6", "0.1", "--gap-seconds", "-1"]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "2 invalid option(s)" in err and "sum to 1" in err and "--gap-seconds" in err
