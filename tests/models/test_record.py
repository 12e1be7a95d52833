"""The inference record: what evaluate / predict / export read instead of processor defaults."""

from __future__ import annotations

import json

import pytest

from sam2_finetune.errors import ModelError
from sam2_finetune.models.record import (
    RECORD_NAME,
    ImageSettings,
    InferenceRecord,
    read_record,
    write_record,
)


def _record() -> InferenceRecord:
    return InferenceRecord(
        family="qwen2_vl",
        base_model="tiny:qwen2_vl",
        method="lora",
        answer_format="qwen2_vl",
        labels=["car", "person"],
        image=ImageSettings(min_pixels=3136, max_pixels=12544),
    )


def test_round_trip(tmp_path):
    write_record(_record(), tmp_path)
    assert read_record(tmp_path) == _record()
    assert read_record(tmp_path).image.max_pixels == 12544


def test_missing_record_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(ModelError) as error:
        read_record(tmp_path)
    message = str(error.value)
    assert RECORD_NAME in message and str(tmp_path) in message and "sam2-finetune train" in message


def test_unreadable_record_names_the_file(tmp_path):
    (tmp_path / RECORD_NAME).write_text(json.dumps({"family": "llava"}))
    with pytest.raises(ModelError, match=RECORD_NAME):
        read_record(tmp_path)
