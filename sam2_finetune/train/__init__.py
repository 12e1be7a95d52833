"""Stage 5, train: the training configuration, the hardware check, and (to come) the training run.

- :mod:`sam2_finetune.train.config`: :class:`TrainConfig`, presets, ``--set`` overrides.
- :mod:`sam2_finetune.train.check`: ``sam2-finetune check``, a config against this machine.

Importing this package does not import torch.
"""

from sam2_finetune.train.config import TrainConfig, list_presets, load_config, save_resolved_config

__all__ = ["TrainConfig", "list_presets", "load_config", "save_resolved_config"]
