"""The safe reader of user YAML / JSON: hostile files are refused before anything expands."""

import json
from pathlib import Path

import pytest
import yaml

from sam2_finetune.cli import main
from sam2_finetune.convert.rows import load_label_map
from sam2_finetune.errors import OptionsError
from sam2_finetune.files import (
    MAX_ALIAS_NODES,
    MAX_DEPTH,
    BoundedLoader,
    HostileFileError,
    parse_yaml_value,
    read_json,
    read_mapping,
    read_yaml,
)
from sam2_finetune.train.config import load_config


def alias_bomb(levels: int = 9, width: int = 9) -> str:
    """The "billion laughs": ``levels`` anchors, each ``width`` aliases of the one before
    (9 x 9 is 387 million nodes once expanded, from a few hundred bytes)."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def test_a_recursive_alias_is_refused_with_the_file_and_line(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model: {family: llava}\na: &a [*a]\n")
    with pytest.raises(OptionsError) as info:
        read_yaml(path, "config")
    message = str(info.value)
    assert message.startswith(f"{path}:2: the config is refused: the alias *a refers to itself")
    assert "Fix:" in message


@pytest.mark.parametrize("text", ["a: &a [*a]", "a: &a {b: [1, {c: *a}]}", "- &x [1, *x]"])
def test_every_shape_of_recursion_is_refused_while_composing(text):
    loader = BoundedLoader(text)
    try:
        with pytest.raises(HostileFileError, match="refers to itself"):
            loader.get_single_data()
        assert loader.constructed_objects == {}  # refused before any object was built
    finally:
        loader.dispose()


def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path):
    text = alias_bomb()
    assert len(text) < 600
    loader = BoundedLoader(text)
    try:
        with pytest.raises(HostileFileError, match="alias bomb"):
            loader.get_single_data()
        # It stopped as soon as the aliases passed the bound: no more than one alias of the
        # largest level past it was counted, and no Python object was built.
        assert MAX_ALIAS_NODES < loader.alias_nodes <= MAX_ALIAS_NODES + 9**4 + 1
        assert loader.constructed_objects == {}
    finally:
        loader.dispose()
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    with pytest.raises(OptionsError, match=r"bomb.yaml:\d+: the config is refused: its aliases"):
        load_config(path)


def test_check_on_hostile_configs_prints_one_message(tmp_path, capsys):
    for name, text in (("recursive.yaml", "a: &a [*a]\n"), ("bomb.yaml", alias_bomb())):
        path = tmp_path / name
        path.write_text(text)
        assert main(["check", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}:") and "is refused" in err
        assert err.count("\n") == 1 and "Traceback" not in err and "RecursionError" not in err


def test_legitimate_aliases_and_merge_keys_are_still_read(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "defaults: &lora {lora_rank: 8, lora_alpha: 16}\n"
        "model: {family: smolvlm, checkpoint: 'tiny:smolvlm', <<: *lora}\n"
        "data: {dataset: &data data/split}\n"
        "training: {epochs: 1}\n"
        "description: *data\n"
    )
    data = read_yaml(path, "config")
    assert data["model"]["lora_rank"] == 8 and data["description"] == "data/split"
    # A key written next to a merge overrides the merged one: not a duplicate.
    path.write_text(
        "base: &b {lora_rank: 8}\nmodel: {<<: *b, lora_rank: 4, family: smolvlm}\n"
        "data: {dataset: d}\ntraining: {epochs: 1}\n"
    )
    assert read_yaml(path, "config")["model"] == {"lora_rank": 4, "family": "smolvlm"}


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_nesting_deeper_than_the_bound_is_refused(tmp_path, suffix):
    path = tmp_path / f"deep{suffix}"
    depth = 100_000  # json and PyYAML would raise RecursionError long before
    path.write_text('{"a": ' + "[" * depth + "]" * depth + "}")
    with pytest.raises(OptionsError, match=f"nests deeper than {MAX_DEPTH} levels"):
        read_mapping(path, "label map")
    # The bound is well above any honest file.
    ok = '{"a": ' + "[" * (MAX_DEPTH - 2) + "]" * (MAX_DEPTH - 2) + "}"
    path.write_text(ok)
    assert read_mapping(path, "label map")["a"]


def test_a_deep_label_map_is_one_message(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text('{"car": ' + "[" * 50_000 + "]" * 50_000 + "}")
    with pytest.raises(OptionsError, match=r"labels.json: the label map is refused: it nests"):
        load_label_map(path)


def test_brackets_inside_json_strings_do_not_count_as_nesting(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"[" * 500: "x", 'a\\"[': "{" * 500}))
    assert read_json(path, "label map") == {"[" * 500: "x", 'a\\"[': "{" * 500}


def test_text_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("label: caf\xe9\n".encode("latin-1"))
    with pytest.raises(OptionsError, match="the config is not UTF-8 text"):
        read_yaml(path, "config")
    # A byte-order mark is fine.
    path.write_bytes(b"\xef\xbb\xbfa: 1\n")
    assert read_yaml(path, "config") == {"a": 1}


@pytest.mark.parametrize(
    ("name", "text"), [("list.yaml", "- a\n- b\n"), ("scalar.json", "3"), ("list.json", "[1]")]
)
def test_a_top_level_that_is_not_a_mapping_is_refused(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(OptionsError, match="the config must be a mapping") as info:
        read_mapping(path, "config")
    assert str(info.value).startswith(str(path))


def test_json_duplicate_keys_and_constants_are_refused(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text('{"car": "vehicle", "car": "auto"}')
    with pytest.raises(OptionsError, match="duplicate key 'car'"):
        read_json(path, "label map")
    path.write_text('{"car": NaN}')
    with pytest.raises(OptionsError, match="NaN is not a JSON value"):
        read_json(path, "label map")


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(OptionsError, match="no such label map file"):
        read_yaml(tmp_path / "nope.yaml", "label map")
    with pytest.raises(OptionsError, match="is a folder, not a config file"):
        read_yaml(tmp_path, "config")


def test_set_values_get_the_same_bounds():
    assert parse_yaml_value("{detect: 1, count: 2}", "--set data.task_mix") == {
        "detect": 1,
        "count": 2,
    }
    assert parse_yaml_value("[unclosed", "--set x") == "[unclosed"  # not YAML: a string
    with pytest.raises(OptionsError, match="refers to itself"):
        parse_yaml_value("&a [*a]", "--set data.task_mix")
    with pytest.raises(OptionsError, match="alias bomb"):
        parse_yaml_value("{" + alias_bomb().replace("\n", ", ").rstrip(", ") + "}", "--set x")


def test_the_loader_is_a_safe_loader():
    """No arbitrary Python objects, as yaml.safe_load."""
    assert issubclass(BoundedLoader, yaml.SafeLoader)
    with pytest.raises(yaml.YAMLError):
        yaml.load("!!python/object/apply:os.system ['true']", Loader=BoundedLoader)


# Every place the package reads a YAML or JSON file a user hands it goes through files.py:
# a hostile file is one message from each, never a RecursionError or a hang.
DEEP_JSON = '{"a": ' + "[" * 50_000 + "]" * 50_000 + "}"


def _label_map(path):
    load_label_map(path)


def _config(path):
    load_config(path)


def _keep_test(path):
    from sam2_finetune.convert import ConvertOptions, convert
    from sam2_finetune.split import SplitOptions, split

    sample = Path(__file__).resolve().parent.parent / "sample_data" / "street_scene.zip"
    data = path.parent / "hf"
    convert(ConvertOptions(exports=[sample], out=data))
    split(SplitOptions(dataset=data, out=path.parent / "out", keep_test=path))


def _checkpoint_config(path):
    from sam2_finetune.models.loading import load_processor

    (path.parent / "config.json").write_text(path.read_text())
    load_processor(path.parent, "smolvlm")


@pytest.mark.parametrize(
    ("reader", "name", "text"),
    [
        (_label_map, "labels.yaml", "a: &a [*a]\n"),
        (_label_map, "labels.yaml", alias_bomb()),
        (_label_map, "labels.json", DEEP_JSON),
        (_config, "config.yaml", alias_bomb()),
        (_config, "config.yaml", "[" * 50_000 + "]" * 50_000),
        (_keep_test, "split_manifest.json", DEEP_JSON),
        (_checkpoint_config, "checkpoint.json", DEEP_JSON),
    ],
)
def test_every_reader_of_user_files_refuses_hostile_ones_in_one_message(
    tmp_path, reader, name, text
):
    from sam2_finetune.errors import Sam2FinetuneError

    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(Sam2FinetuneError) as info:
        reader(path)
    message = str(info.value)
    assert "is refused" in message and "Fix:" in message
