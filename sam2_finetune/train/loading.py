"""Where a training config's values come from: presets, YAML files and ``--set`` overrides.

Plain data in, plain data out: nothing here knows :class:`~sam2_finetune.train.config.TrainConfig`
(which :func:`~sam2_finetune.train.config.load_config` validates the merged result against), so
the schema imports this module and not the other way round.

The files go through :mod:`sam2_finetune.files`, which refuses recursive or exploding aliases,
deep nesting, duplicate keys and text that is not UTF-8, each with one message naming the file.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sam2_finetune.errors import OptionsError, describe
from sam2_finetune.files import parse_yaml_value
from sam2_finetune.files import read_yaml as read_yaml_file

PRESETS_DIR = Path(__file__).resolve().parent.parent / "presets"
# ``presets/accelerate/`` holds launcher configs (``accelerate launch --config_file``), not
# training configs: they are no presets of ``train``.
ACCELERATE_DIR = PRESETS_DIR / "accelerate"
PIPELINES_DIR = PRESETS_DIR / "pipelines"  # `run` pipeline files, not training presets


def list_presets() -> list[str]:
    """Preset names under ``presets/``: ``quick_test``, ``qwen2_5_vl/7b_qlora``, ..."""
    if not PRESETS_DIR.is_dir():
        return []
    return sorted(
        p.relative_to(PRESETS_DIR).with_suffix("").as_posix()
        for p in PRESETS_DIR.rglob("*.yaml")
        if not p.is_relative_to(ACCELERATE_DIR) and not p.is_relative_to(PIPELINES_DIR)
    )


def preset_path(name: str) -> Path:
    """The file of preset ``name`` (``quick_test`` or ``qwen2_5_vl/7b_qlora``, ``.yaml``
    optional); :class:`OptionsError` naming the closest preset if there is none."""
    stem = name[:-5] if name.endswith(".yaml") else name
    path = PRESETS_DIR / f"{stem}.yaml"
    if path.is_file() and path.is_relative_to(ACCELERATE_DIR):
        raise OptionsError(
            describe(
                "is a launcher config for `accelerate launch`, not a training config",
                file=path,
                fix=f"launch with it: `accelerate launch --config_file {path} -m sam2_finetune "
                "train CONFIG` (see docs/multi-gpu.md), and name a training preset as CONFIG",
            )
        )
    if path.is_file():
        return path
    names = list_presets()
    close = difflib.get_close_matches(stem, names, n=1, cutoff=0.5)
    raise OptionsError(
        describe(
            f"no preset named {name!r}",
            file=PRESETS_DIR,
            expected=" | ".join(names) or "YAML files under presets/",
            found=repr(name),
            fix=f"did you mean {close[0]!r}? Or give a config file path"
            if close
            else "name one of the presets above, or give a config file path",
        )
    )


def config_source(config: str | Path) -> Path:
    """A config argument as a file: an existing path, else a preset name."""
    path = Path(config)
    if path.is_file():
        return path
    stem = str(config)[:-5] if str(config).endswith(".yaml") else str(config)
    if path.is_dir() and not (PRESETS_DIR / f"{stem}.yaml").is_file():
        raise OptionsError(
            describe(
                "is a folder, not a YAML config file",
                file=path,
                fix="give the YAML file inside it, or a preset name: " + ", ".join(list_presets()),
            )
        )
    if path.suffix in (".yaml", ".yml") and not (PRESETS_DIR / f"{stem}.yaml").is_file():
        raise OptionsError(
            describe(
                "no such config file",
                file=path,
                fix="check the path, or name a preset: " + ", ".join(list_presets()),
            )
        )
    return preset_path(str(config))


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's mapping (see :func:`sam2_finetune.files.read_yaml` for what is refused),
    with YAML 1.2 floats (``1e-4`` is a number)."""
    data = read_yaml_file(path, "config", expected="sections model:, data:, training:, ...")
    return yaml12_floats(data)


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in: mappings recursively, anything else replaced."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"training.learning_rate=1e-4"`` -> ``(["training", "learning_rate"], 0.0001)``.

    The value is parsed as YAML (``true``, ``null``, ``[detect, count]``, ``{detect: 1}``); a
    value YAML cannot read stays a string; one YAML refuses as hostile (a recursive alias) is
    an error.
    """
    key, sep, raw = item.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise OptionsError(
            describe(
                "an override must look like SECTION.OPTION=VALUE",
                found=repr(item),
                fix="write e.g. --set training.learning_rate=1e-4",
            )
        )
    value = parse_yaml_value(raw, f"--set {key.strip()}") if raw.strip() else None
    return [p.strip() for p in parts], yaml12_floats(value)


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` with each ``KEY=VALUE`` override set (nested keys created as needed)."""
    result = deep_merge({}, data)
    problems = []
    for item in overrides:
        keys, value = parse_override(item)
        node: dict[str, Any] = result
        for i, key in enumerate(keys[:-1]):
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                problems.append(
                    f"{item!r}: {'.'.join(keys[: i + 1])} is a value ({child!r}), not a section"
                )
                break
            node = child
        else:
            node[keys[-1]] = value
    if problems:
        raise OptionsError("invalid --set override(s):\n  - " + "\n  - ".join(problems))
    return result


_YAML12_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def yaml12_floats(data: Any) -> Any:
    """``data`` with strings such as ``1e-4`` read as floats.

    PyYAML follows YAML 1.1, which reads 1e-4 (no dot) as a string; YAML 1.2 and everyone
    writing a learning rate mean a float.
    """
    if isinstance(data, dict):
        return {k: yaml12_floats(v) for k, v in data.items()}
    if isinstance(data, list):
        return [yaml12_floats(v) for v in data]
    if isinstance(data, str) and _YAML12_FLOAT.fullmatch(data.strip()):
        return float(data)
    return data


def read_config_sources(
    path: str | Path | None, overrides: Sequence[str], preset: str | None
) -> tuple[dict[str, Any], str]:
    """The merged mapping of a preset, a YAML file and ``--set`` overrides, and a name for it
    in messages (``presets/quick_test.yaml + 2 override(s)``)."""
    if path is None and preset is None:
        raise OptionsError(
            describe(
                "no configuration given",
                fix="pass a YAML file or a preset name (" + ", ".join(list_presets()) + ")",
            )
        )
    data: dict[str, Any] = {}
    sources = []
    if preset is not None:
        preset_file = config_source(preset)
        data = read_yaml(preset_file)
        sources.append(str(preset_file))
    if path is not None:
        data = deep_merge(data, read_yaml(path))
        sources.append(str(path))
    data = apply_overrides(data, overrides)
    what = " + ".join(sources) + (f" + {len(overrides)} override(s)" if overrides else "")
    return data, what
