"""The model a run trains: loaded, frozen where the config says, quantised and wrapped in LoRA.

:func:`prepare_model` is the one place that turns ``config.model`` into a trainable model:

1. load the processor and the model (``models.loading``; 8/4-bit through bitsandbytes, the
   family's vision tower, projector and output head left unquantised);
2. freeze the vision tower and the projector when the config says so (full fine-tuning), or keep
   them trainable next to the adapters (LoRA: peft's ``modules_to_save``);
3. for a quantised model, a light k-bit preparation (below);
4. wrap in LoRA (``method: lora``), the adapters in fp32 (peft's ``autocast_adapter_dtype``), and
   an unfrozen projector or vision tower (``modules_to_save``) too;
5. gradient checkpointing, non-reentrant, with input gradients enabled so that it works with
   frozen embeddings.

Why not peft's ``prepare_model_for_kbit_training``: it casts every parameter that is not
quantised to fp32 (vision tower, embeddings, norms, output head), which for a frozen part only
costs memory: peers measured 19.1 GB against 14.2 GB peak for a 14B model. Here the frozen parts
stay in the compute dtype and only what is trained (the adapters) is fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sam2_finetune.models.loading import load_model, load_processor, quiet_peft
from sam2_finetune.models.registry import get_family

if TYPE_CHECKING:
    import torch

    from sam2_finetune.train.config import ModelSection

ResolvedPrecision = Literal["fp32", "bf16", "fp16"]


@dataclass
class PreparedModel:
    """What :func:`prepare_model` returns: the model to hand to the Trainer and its processor."""

    model: Any
    processor: Any
    trainable_parameters: int
    total_parameters: int


def weights_dtype(precision: ResolvedPrecision, method: str) -> torch.dtype:
    """The dtype the base weights are loaded in.

    bf16 and fp16 runs keep frozen weights in that dtype (half the memory); a full fine-tune in
    fp16 keeps fp32 weights, because the fp16 grad scaler cannot unscale fp16 gradients (autocast
    then computes in fp16).
    """
    import torch

    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16" and method == "lora":
        return torch.float16
    return torch.float32


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def freeze_parts(model: Any, family: str, options: ModelSection) -> None:
    """``requires_grad = False`` on the vision tower / projector where the config freezes them."""
    row = get_family(family)
    frozen: tuple[str, ...] = ()
    if options.freeze_vision_tower:
        frozen += row.vision_modules
    if options.freeze_projector:
        frozen += row.projector_modules
    for name, parameter in model.named_parameters():
        if _matches(name, frozen):
            parameter.requires_grad_(False)


def prepare_quantized(model: Any) -> None:
    """Freeze every base weight of a bitsandbytes model; keep dtypes as loaded (see module)."""
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    # Marks read by the Trainer and peft: the model is quantised and meant for adapter training.
    model.is_loaded_in_kbit = True


def lora_config(family: str, options: ModelSection) -> Any:
    """peft's ``LoraConfig`` for ``options``: targets from the config (default: the family's LM
    projections); an unfrozen vision tower or projector trains in full next to the adapters."""
    from peft import LoraConfig

    row = get_family(family)
    modules_to_save = []
    if not options.freeze_projector:
        modules_to_save += list(row.projector_modules)
    if not options.freeze_vision_tower:
        modules_to_save += list(row.vision_modules)
    return LoraConfig(
        r=options.lora_rank,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=options.lora_targets or row.lora_target_modules,
        modules_to_save=modules_to_save or None,
        bias="none",
        task_type="CAUSAL_LM",
    )


def prepare_model(
    options: ModelSection,
    *,
    precision: ResolvedPrecision,
    gradient_checkpointing: bool = False,
    device_map: Any = None,
) -> PreparedModel:
    """Load ``options.checkpoint`` and make it trainable as ``options`` says (see the module).

    >>> from sam2_finetune.train.config import load_config  # doctest: +SKIP
    >>> prepared = prepare_model(load_config(preset="quick_test").model, precision="fp32")
    """
    import torch

    family = options.family
    checkpoint = str(options.checkpoint)
    processor = load_processor(checkpoint, family, trust_remote_code=options.trust_remote_code)
    model = load_model(
        checkpoint,
        family,
        quantization=options.quantization,
        dtype=weights_dtype(precision, options.method),
        device_map=device_map,
        trust_remote_code=options.trust_remote_code,
    )
    if options.quantization != "none":
        prepare_quantized(model)
        if options.quantization == "4bit":
            from sam2_finetune.models.quantization import disable_cpu_4bit_packing

            # On AVX512-BF16 CPUs an evaluation pass would switch layers to a kernel without
            # backward; a trained model keeps the path every CPU (and the GPU) trains through.
            disable_cpu_4bit_packing(model)
    elif options.method == "full":
        freeze_parts(model, family, options)
    if gradient_checkpointing:
        model.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
        # Checkpointed blocks need an input that requires grad when the embeddings are frozen.
        model.enable_input_require_grads()
        model.config.use_cache = False
    if options.method == "lora":
        from peft import get_peft_model

        with quiet_peft():
            model = get_peft_model(model, lora_config(family, options))
        # An unfrozen projector or vision tower is trained in full next to the adapters (peft's
        # modules_to_save copies it in the weights' dtype): its weights, like the adapters', are
        # fp32, so bf16 does not round its updates away and fp16's grad scaler can unscale them.
        for parameter in model.parameters():
            if parameter.requires_grad and parameter.dtype != torch.float32:
                parameter.data = parameter.data.float()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return PreparedModel(model, processor, trainable, total)
