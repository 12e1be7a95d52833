"""The evaluate stage: what a fine-tuned model answers, read back and scored.

Parts so far: :mod:`sam2_finetune.evaluate.generate` (batched, left-padded generation with the
family's prompt and answer format, parsed with the convert stage's parsers). The stage function
and its command (``sam2-finetune evaluate --model RUN_OR_EXPORT --data SPLIT_DIR``) come next;
the training callback (``train.callbacks.GroundingMetricsCallback``) already uses ``generate``.
"""

from sam2_finetune.evaluate.predict import PredictOptions, PredictResult, predict

__all__ = ["PredictOptions", "PredictResult", "predict"]
