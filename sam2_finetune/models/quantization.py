"""8/4-bit quantisation through bitsandbytes: the option, what its CPU kernel needs, a quiet
import, and a probe that runs a real quantised layer.

Why a module of its own: bitsandbytes 0.50 behaves differently per CPU. On CPUs with AVX512-BF16
a :class:`bitsandbytes.nn.Linear4bit` repacks its 4-bit weight for a fused CPU kernel the first
time it runs without autograd (``model.eval()`` and inputs that need no gradient: evaluation,
generation, the first layers of a frozen model). Which path a layer takes is decided in
``Linear4bit.__init__`` by ``bitsandbytes.functional.has_avx512bf16()`` (a cpuid test in its
native library; no environment variable overrides it). The repacking needs each layer's input
dimension divisible by the 64-value quantisation block and its output dimension by the 32-row
tile; smaller layers crash inside bitsandbytes (``shape '[32, 0]' is invalid``). On other CPUs
the same layer dequantises and runs ``torch.nn.functional.linear``, which takes any shape. This
module names that rule once, for the loader and for ``sam2-finetune check``.

Importing this module imports neither torch nor bitsandbytes: the literal :data:`Quantization`
is part of the training config.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Literal

Quantization = Literal["none", "8bit", "4bit"]

# bitsandbytes' CPU packing (functional._convert_weight_packed_for_cpu): blocksize 64 along the
# input dimension, block_n 32 along the output dimension.
CPU_PACKED_IN_MULTIPLE = 64
CPU_PACKED_OUT_MULTIPLE = 32

# What bitsandbytes logs at import on AVX512-BF16 CPUs when the optional `kernels` package (a Hub
# download of a faster kernel) is absent. It then uses its own bundled kernel, which works: the
# line is noise to our users, so it is dropped (and only it).
KERNELS_NOTICE = "Failed to load CPU gemm_4bit_forward from kernels-community"
_CPU_OPS_LOGGER = "bitsandbytes.backends.cpu.ops"


class _DropKernelsNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(KERNELS_NOTICE)


# Installed when this module is imported, before bitsandbytes is: logging.getLogger returns the
# same logger object to bitsandbytes later, so the filter holds whoever imports it first (our
# loader, transformers, peft). Importing the logger does not import bitsandbytes.
logging.getLogger(_CPU_OPS_LOGGER).addFilter(_DropKernelsNotice())


def import_bitsandbytes() -> ModuleType:
    """``import bitsandbytes``, without its import-time notice about the optional ``kernels``
    package (filtered by this module). Imported only where quantisation is asked for."""
    import bitsandbytes

    return bitsandbytes


def cpu_packs_4bit() -> bool:
    """Whether bitsandbytes repacks 4-bit weights for its AVX512-BF16 CPU kernel on this
    machine: the same function ``Linear4bit`` asks. Imports bitsandbytes (quietly)."""
    import_bitsandbytes()
    from bitsandbytes.nn import modules

    return bool(modules.has_avx512bf16())


def fits_cpu_packing(in_features: int, out_features: int) -> bool:
    """Whether a 4-bit layer of this shape survives bitsandbytes' CPU repacking."""
    return in_features % CPU_PACKED_IN_MULTIPLE == 0 and out_features % CPU_PACKED_OUT_MULTIPLE == 0


def unfit_for_cpu_packing(
    layers: Iterable[tuple[str, int, int]],
) -> list[tuple[str, int, int]]:
    """The ``(name, in_features, out_features)`` layers that :func:`fits_cpu_packing` refuses."""
    return [layer for layer in layers if not fits_cpu_packing(layer[1], layer[2])]


def lm_linear_shapes(
    hidden_size: int, intermediate_size: int, heads: int, kv_heads: int, head_dim: int
) -> list[tuple[str, int, int]]:
    """``(name, in, out)`` of a Llama-style decoder layer's projections: what 8/4-bit
    quantisation replaces (attention q/k/v/o and the gated MLP)."""
    q, kv = heads * head_dim, kv_heads * head_dim
    return [
        ("q_proj", hidden_size, q),
        ("k_proj", hidden_size, kv),
        ("v_proj", hidden_size, kv),
        ("o_proj", q, hidden_size),
        ("gate_proj", hidden_size, intermediate_size),
        ("up_proj", hidden_size, intermediate_size),
        ("down_proj", intermediate_size, hidden_size),
    ]


def describe_layers(layers: list[tuple[str, int, int]], limit: int = 4) -> str:
    """``name (in x out)`` for the first ``limit`` layers, and how many more."""
    text = ", ".join(f"{name} ({n_in} in, {n_out} out)" for name, n_in, n_out in layers[:limit])
    if len(layers) > limit:
        text += f" and {len(layers) - limit} more"
    return text


@dataclass(frozen=True)
class Probe4bit:
    """What :func:`probe_4bit` saw. ``error`` is None when every step worked; ``packed`` is
    whether bitsandbytes repacked the weight for its AVX512-BF16 CPU kernel."""

    error: str | None
    packed: bool


def probe_4bit(device: str = "cpu", in_features: int = 128, out_features: int = 64) -> Probe4bit:
    """Run a real ``bitsandbytes.nn.Linear4bit`` (NF4, double quantisation: what
    :func:`~sam2_finetune.models.loading.quantization_config` asks for) on ``device`` the way a
    QLoRA model does: quantise on ``.to(device)``, a training forward and backward, then an
    evaluation forward without autograd (where AVX512-BF16 CPUs repack the weight). Both outputs
    are compared with the dequantised weight's ``linear``. Any failure is reported, not raised.

    >>> probe_4bit("cpu").error is None  # doctest: +SKIP
    True
    """
    try:
        import torch

        bnb = import_bitsandbytes()
        from bitsandbytes.functional import dequantize_4bit

        generator = torch.Generator().manual_seed(0)
        layer = bnb.nn.Linear4bit(
            in_features,
            out_features,
            compute_dtype=torch.float32,
            compress_statistics=True,
            quant_type="nf4",
        )
        with torch.no_grad():
            layer.weight.data = torch.randn(out_features, in_features, generator=generator)
            layer.bias.data = torch.randn(out_features, generator=generator)
        layer = layer.to(device)  # quantises
        weight = dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
        x = torch.randn(3, in_features, generator=generator).to(device)
        with torch.no_grad():
            expected = torch.nn.functional.linear(x, weight, layer.bias.float())
        scale = float(expected.abs().max())

        layer.train()
        trained = x.clone().requires_grad_(True)
        out = layer(trained)
        out.sum().backward()
        out = out.detach()
        if trained.grad is None or not bool(torch.isfinite(trained.grad).all()):
            return Probe4bit("4-bit backward gave no finite gradient", False)
        if not float((out.float() - expected).abs().max()) < 0.05 * scale:
            return Probe4bit("4-bit training forward disagrees with its dequantised weight", False)

        layer.eval()
        with torch.no_grad():
            out = layer(x)
        packed = bool(getattr(layer.weight.quant_state, "packing_format_for_cpu", False))
        # The packed CPU kernel computes in bf16: about 3 significant digits.
        if not float((out.float() - expected).abs().max()) < 0.05 * scale:
            return Probe4bit(
                "4-bit inference forward disagrees with its dequantised weight", packed
            )
        return Probe4bit(None, packed)
    except Exception as exc:  # any import or kernel failure means "not usable here"
        return Probe4bit(f"{type(exc).__name__}: {exc}".strip(), False)


def disable_cpu_4bit_packing(model: Any) -> int:
    """Keep every 4-bit layer of ``model`` on bitsandbytes' dequantise-and-``linear`` path, the
    one CPUs without AVX512-BF16 always take; return how many layers were switched.

    Call it on a model that will be *trained* on an AVX512-BF16 CPU. bitsandbytes 0.50 repacks a
    layer's weight at its first forward pass without autograd (an evaluation step) and then keeps
    using the packed kernel, which has no backward, for every later pass: training after an
    evaluation crashes in layers with a bias (Qwen's q/k/v: ``a view of a leaf Variable that
    requires grad is being used in an in-place operation``) and silently stops the gradient
    through the others. ``Linear4bit.support_avx512bf16_for_cpu`` is the flag bitsandbytes reads
    for that decision; without packing every layer shape works too. Inference-only models can
    keep the (faster) packed kernel. Call it before the model's first forward pass.
    """
    from bitsandbytes.nn import Linear4bit

    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)
