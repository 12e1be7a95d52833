"""GPU memory needed to fine-tune a vision-language model, estimated from its architecture.

The estimate is the sum of seven terms, in bytes (``a`` = 2 for bf16/fp16 activations, 4 for fp32;
``w`` = the same for weights; N = batch x (text tokens + image tokens)):

``weights``
    Frozen parameters at ``w`` bytes each. With 8/4-bit quantisation the decoder layers take 1.0
    (LLM.int8) or 0.516 (NF4 + double quantisation: 0.5 + 1/64 for 8-bit block scales + 4/16384
    for their fp32 scales) bytes per parameter; the vision tower, projector, embeddings and output
    head stay unquantised, frozen, at ``w`` bytes: our k-bit preparation
    (``train.model.prepare_quantized``) keeps them in the compute dtype. ``upcast_unquantized``
    counts them at 4 bytes instead, what peft's ``prepare_model_for_kbit_training`` does to every
    non-quantised parameter (measured: benchmarks/bench_kbit_memory.py).
    Trainable base parameters (full fine-tuning, an unfrozen vision tower or projector) are kept
    in fp32: 4 bytes.
``adapters``
    LoRA parameters, fp32 (peft upcasts adapters): per decoder layer and expert,
    ``rank x (d_in + d_out)`` summed over the targeted projections (q, k, v, o, gate, up, down).
``gradients``
    4 bytes per trainable parameter.
``optimizer``
    Per trainable parameter: 8 bytes (AdamW, two fp32 moments), 2 (8-bit AdamW), 0.5 (Adafactor,
    factored second moment, no momentum; an upper bound for LoRA matrices), 0 (plain SGD).
``activations``
    What autograd keeps for the backward pass, per token and decoder layer:
    ``8h`` (two RMSNorms keep an fp32 copy of their input) ``+ a(2h + q + 2kv + 2q + 4i)``
    (normed inputs, q/k/v and the attention output kept by SDPA, the o_proj input, and the gate,
    up, activation and product tensors of the gated MLP) ``+ (a + m) x sum(d_in)`` over
    LoRA-targeted projections (peft feeds lora_A a cast, dropped-out copy of the input; ``m`` = 1
    byte of dropout mask when dropout > 0). h = hidden size, i = MLP size, q = heads x head_dim,
    kv = kv heads x head_dim. Eager attention adds ``(4 + a) x heads x S`` per token (fp32 softmax
    and its cast), S = sequence length. With gradient checkpointing only each layer's input
    (``a x h`` per token and layer) is kept, plus one layer recomputed at a time. A frozen vision
    tower keeps nothing (no parameter before it needs a gradient): only one layer's forward working
    set, ``a (4 h_v + 2 i_v)`` per patch, counts. A trainable tower keeps ``a (8 h_v + 2 i_v)`` per
    patch and layer (``a h_v`` with checkpointing); a trainable projector keeps its input.
    Quantised layers add a transient dequantised copy of the largest matrix.
``logits``
    ``N x vocab x (a + 8)``: the logits, their fp32 upcast in the loss, and the fp32 log-softmax
    cross-entropy keeps (transformers' ``ForCausalLMLoss``). With 150k-260k vocabularies this is
    often the largest activation term.
``overhead``
    10 % of the rest for allocator fragmentation, plus 512 MiB for the CUDA context and cuBLAS
    workspaces (memory a training process uses but ``torch.cuda.max_memory_allocated`` does not
    report).

Sanity checks against published numbers (tests/models/test_memory.py): for LLaMA-7B at 512
tokens with checkpointing, QLoRA 4-bit comes to 5-8 GiB and 8-bit to 8-11 GiB (LLaMA-Factory's
hardware table: 6 and 10 GB), 16-bit LoRA to 14-18 GiB (table: 16 GB); LLaMA-65B QLoRA fits
48 GB (QLoRA paper, Dettmers et al. 2023). These are other people's ballparks, not measurements:
the estimator is UNVERIFIED against a measured peak until benchmarks/RESULTS.md records one.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Literal

from sam2_finetune.models.quantization import Quantization
from sam2_finetune.models.registry import (
    CHECKPOINT_FAMILY,
    FAMILIES,
    Architecture,
    get_checkpoint,
    get_family,
)

# The precision a run trains in; the training config's `training.precision` also takes "auto",
# which `check` resolves per machine (train.check.resolve_precision).
Precision = Literal["fp32", "bf16", "fp16"]
PrecisionChoice = Literal["auto", Precision]
Method = Literal["lora", "full"]
AttnImplementation = Literal["sdpa", "flash_attention_2", "eager"]
# transformers' TrainingArguments.optim names that make sense for LoRA on one GPU.
Optimizer = Literal[
    "adamw_torch",
    "adamw_torch_fused",
    "paged_adamw_32bit",
    "adamw_bnb_8bit",
    "paged_adamw_8bit",
    "adafactor",
    "sgd",
]

QUANTIZED_BYTES_PER_PARAMETER: dict[str, float] = {
    "8bit": 1.0,
    "4bit": 0.5 + 1 / 64 + 4 / (64 * 256),
}
OPTIMIZER_BYTES_PER_PARAMETER: dict[str, float] = {
    "adamw_torch": 8,
    "adamw_torch_fused": 8,
    "paged_adamw_32bit": 8,
    "adamw_bnb_8bit": 2,
    "paged_adamw_8bit": 2,
    "adafactor": 0.5,
    "sgd": 0,
}
LORA_MODULES = ("q", "k", "v", "o", "gate", "up", "down")
FRAGMENTATION = 0.10
CUDA_CONTEXT_BYTES = 512 * 2**20


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak GPU memory of one training process, by term, in bytes (see the module
    docstring for each term's formula)."""

    weights: int
    adapters: int
    gradients: int
    optimizer: int
    activations: int
    logits: int
    overhead: int
    trainable_parameters: int
    tokens_per_sample: int

    @property
    def total(self) -> int:
        """Sum of all terms."""
        return (
            self.weights
            + self.adapters
            + self.gradients
            + self.optimizer
            + self.activations
            + self.logits
            + self.overhead
        )

    def as_dict(self) -> dict[str, int]:
        """The terms and the total, for JSON reports."""
        return {**asdict(self), "total": self.total}

    def describe(self) -> str:
        """One line, GiB per term: ``11.2 GiB = weights 5.1 + adapters 0.2 + ...``."""
        terms = ("weights", "adapters", "gradients", "optimizer", "activations", "logits")
        parts = " + ".join(f"{t} {getattr(self, t) / 2**30:.2f}" for t in terms)
        return f"{self.total / 2**30:.1f} GiB = {parts} + overhead {self.overhead / 2**30:.2f}"


def resolve_architecture(family_or_arch: str | Architecture) -> Architecture:
    """An :class:`Architecture` from itself, a family name (its default checkpoint) or a
    registered checkpoint name; :class:`~sam2_finetune.errors.ModelError` otherwise."""
    if isinstance(family_or_arch, Architecture):
        return family_or_arch
    if family_or_arch in FAMILIES:
        return FAMILIES[family_or_arch].default_checkpoint.architecture
    if family_or_arch in CHECKPOINT_FAMILY:
        return get_checkpoint(family_or_arch).architecture
    return get_family(family_or_arch).default_checkpoint.architecture  # raises, naming families


def lora_parameters(arch: Architecture, rank: int, modules: Collection[str] = LORA_MODULES) -> int:
    """LoRA parameters when every decoder layer (and expert) adapts ``modules`` at ``rank``."""
    h, i = arch.hidden_size, arch.intermediate_size
    q = arch.num_attention_heads * arch.head_dim
    kv = arch.num_kv_heads * arch.head_dim
    shapes = {  # module -> d_in + d_out
        "q": h + q,
        "k": h + kv,
        "v": h + kv,
        "o": q + h,
        "gate": h + i,
        "up": h + i,
        "down": i + h,
    }
    per_layer = sum(shapes[m] for m in modules)
    return rank * per_layer * arch.num_layers * arch.experts


def _lora_input_width(arch: Architecture, modules: Collection[str]) -> int:
    h, i = arch.hidden_size, arch.intermediate_size
    q = arch.num_attention_heads * arch.head_dim
    widths = {"q": h, "k": h, "v": h, "o": q, "gate": h, "up": h, "down": i}
    return sum(widths[m] for m in modules)


def layer_activation_bytes_per_token(
    arch: Architecture,
    activation_bytes: int,
    *,
    lora: bool,
    lora_dropout: float,
    lora_modules: Collection[str] = LORA_MODULES,
) -> float:
    """Bytes autograd keeps per token in one decoder layer, without checkpointing (no S^2 term)."""
    a = activation_bytes
    h, i = arch.hidden_size, arch.intermediate_size
    q = arch.num_attention_heads * arch.head_dim
    kv = arch.num_kv_heads * arch.head_dim
    kept = 8 * h + a * (2 * h + q + 2 * kv + 2 * q + 4 * i)
    if lora:
        kept += (a + (1 if lora_dropout > 0 else 0)) * _lora_input_width(arch, lora_modules)
    return kept


def estimate_memory(
    family_or_arch: str | Architecture,
    *,
    quantization: Quantization,
    lora_rank: int,
    batch_size: int,
    seq_len: int,
    image_tokens: int,
    gradient_checkpointing: bool,
    optimizer: Optimizer,
    precision: Precision,
    method: Method = "lora",
    lora_dropout: float = 0.05,
    lora_modules: Collection[str] = LORA_MODULES,
    freeze_vision_tower: bool = True,
    freeze_projector: bool = True,
    attn_implementation: AttnImplementation = "sdpa",
    upcast_unquantized: bool = False,
) -> MemoryEstimate:
    """Estimate peak GPU memory of one training process (one GPU) for a configuration.

    ``seq_len`` is text tokens per sample (prompt + answer); ``image_tokens`` the LM image tokens
    per sample; the LM sees ``seq_len + image_tokens`` tokens. ``family_or_arch`` is a family
    (its default checkpoint), a registered checkpoint name, or an :class:`Architecture`. The
    formula is in this module's docstring and in docs/models.md.

    >>> e = estimate_memory("llava", quantization="4bit", lora_rank=16, batch_size=1,
    ...     seq_len=256, image_tokens=576, gradient_checkpointing=True,
    ...     optimizer="paged_adamw_8bit", precision="bf16")
    >>> 5 < e.total / 2**30 < 10
    True
    """
    if batch_size < 1 or seq_len < 0 or image_tokens < 0 or seq_len + image_tokens < 1:
        raise ValueError(
            f"batch_size >= 1 and a positive token count needed, got batch {batch_size}, "
            f"{seq_len} text + {image_tokens} image tokens"
        )
    if quantization != "none" and method == "full":
        raise ValueError("8/4-bit quantisation trains adapters only: use method='lora'")
    if method == "lora" and lora_rank < 1:
        raise ValueError(f"lora_rank must be >= 1, got {lora_rank}")
    unknown = set(lora_modules) - set(LORA_MODULES)
    if unknown:
        raise ValueError(f"unknown LoRA module kinds {sorted(unknown)}; known: {LORA_MODULES}")
    arch = resolve_architecture(family_or_arch)
    a = 4 if precision == "fp32" else 2
    lora = method == "lora"

    # Parameters by role; trainable base parameters are held in fp32.
    vision, projector = arch.vision_parameters, arch.projector_parameters
    embedding, decoder = arch.embedding_parameters, arch.decoder_parameters
    if lora:
        trainable_base = (0 if freeze_vision_tower else vision) + (
            0 if freeze_projector else projector
        )
    else:
        trainable_base = arch.parameters
    frozen_unquantized = vision + projector + embedding - (trainable_base if lora else 0)
    if not lora:
        weights = 4 * arch.parameters
    elif quantization == "none":
        weights = a * (decoder + frozen_unquantized) + 4 * trainable_base
    else:
        unquantized_bytes = 4 if upcast_unquantized else a
        weights = (
            QUANTIZED_BYTES_PER_PARAMETER[quantization] * decoder
            + unquantized_bytes * frozen_unquantized
            + 4 * trainable_base
        )
    adapter_parameters = lora_parameters(arch, lora_rank, lora_modules) if lora else 0
    trainable = adapter_parameters + trainable_base

    # Activations of the language model.
    tokens = seq_len + image_tokens
    n = batch_size * tokens
    per_layer = layer_activation_bytes_per_token(
        arch, a, lora=lora, lora_dropout=lora_dropout, lora_modules=lora_modules
    )
    attention_matrix = 0.0
    if attn_implementation == "eager":
        attention_matrix = (4 + a) * arch.num_attention_heads * tokens
    if gradient_checkpointing:
        activations = n * (arch.num_layers * a * arch.hidden_size + per_layer + attention_matrix)
    else:
        activations = n * arch.num_layers * (per_layer + attention_matrix)
    if quantization != "none":
        activations += (
            a
            * arch.hidden_size
            * max(arch.intermediate_size, arch.num_attention_heads * arch.head_dim)
        )

    # Vision tower and projector.
    patches = batch_size * image_tokens * arch.patches_per_image_token
    hv, iv = arch.vision_hidden_size, arch.vision_intermediate_size
    vision_trains = not freeze_vision_tower or not lora
    if vision_trains:
        kept = a * hv if gradient_checkpointing else a * (8 * hv + 2 * iv)
        activations += patches * arch.vision_num_layers * kept
    activations += patches * a * (4 * hv + 2 * iv)
    if vision_trains or not freeze_projector:
        activations += patches * a * hv

    logits = n * arch.vocab_size * (a + 8)
    subtotal = (
        weights
        + 4 * adapter_parameters
        + 4 * trainable
        + OPTIMIZER_BYTES_PER_PARAMETER[optimizer] * trainable
        + activations
        + logits
    )
    return MemoryEstimate(
        weights=int(weights),
        adapters=4 * adapter_parameters,
        gradients=4 * trainable,
        optimizer=int(OPTIMIZER_BYTES_PER_PARAMETER[optimizer] * trainable),
        activations=int(activations),
        logits=int(logits),
        overhead=int(FRAGMENTATION * subtotal + CUDA_CONTEXT_BYTES),
        trainable_parameters=trainable,
        tokens_per_sample=tokens,
    )
