"""The evaluate stage: what a fine-tuned model answers, read back and scored.

``evaluate(EvaluateOptions) -> EvaluateResult`` (``sam2-finetune evaluate --model RUN_OR_EXPORT
--data SPLIT_DIR --out DIR``, ``make evaluate``) is :mod:`sam2_finetune.evaluate.run`. Its parts:

- :mod:`~sam2_finetune.evaluate.loading`: ``load_for_inference`` (a run, its best/ or a
  checkpoint, an adapter or merged export -> model, processor with the training image settings,
  and the run's record);
- :mod:`~sam2_finetune.evaluate.generate`: batched, left-padded generation with the family's
  prompt and answer format, parsed with the convert stage's parsers (the training callback uses
  it too);
- :mod:`~sam2_finetune.evaluate.pictures`: predictions drawn over truth (``draw_objects``);
- :mod:`~sam2_finetune.evaluate.charts`: the PNG charts (grid, curves, confusion, AP bars);
- :mod:`~sam2_finetune.evaluate.options`: ``EvaluateOptions``, from which the CLI is generated.

The scores themselves are :mod:`sam2_finetune.metrics` (shared with the training callback).
"""

from sam2_finetune.evaluate.loading import InferenceModel, load_for_inference
from sam2_finetune.evaluate.options import EvaluateOptions
from sam2_finetune.evaluate.run import EvaluateResult, evaluate, evaluate_command

__all__ = [
    "EvaluateOptions",
    "EvaluateResult",
    "InferenceModel",
    "evaluate",
    "evaluate_command",
    "load_for_inference",
]
