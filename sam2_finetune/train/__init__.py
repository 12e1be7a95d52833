"""Stage 5, train: the training configuration, the hardware check, and (to come) the training run.

- :mod:`sam2_finetune.train.config`: :class:`TrainConfig` (the schema), :func:`load_config`.
- :mod:`sam2_finetune.train.loading`: presets, config files and ``--set`` overrides.
- :mod:`sam2_finetune.train.check`: ``sam2-finetune check``, a config against this machine.

Importing this package does not import torch.
"""

from sam2_finetune.train.config import (
    TrainConfig,
    dump_config,
    format_config_error,
    load_config,
    save_resolved_config,
    validate_config,
)
from sam2_finetune.train.loading import (
    PRESETS_DIR,
    apply_overrides,
    config_source,
    deep_merge,
    list_presets,
    parse_override,
    preset_path,
    read_yaml,
)
from sam2_finetune.train.run import TrainOptions, TrainResult, train

__all__ = [
    "PRESETS_DIR",
    "TrainConfig",
    "TrainOptions",
    "TrainResult",
    "apply_overrides",
    "config_source",
    "deep_merge",
    "dump_config",
    "format_config_error",
    "list_presets",
    "load_config",
    "parse_override",
    "preset_path",
    "read_yaml",
    "save_resolved_config",
    "train",
    "validate_config",
]
