"""The supported model families, one literal row each, with the numbers the memory estimator needs.

Each :class:`ModelFamily` row names the transformers classes (or ``trust_remote_code``), real
checkpoints with their parameter counts and architecture numbers, the answer format the family was
pretrained on, the LoRA target-module pattern, the vision modules kept frozen and out of
quantisation, how image tokens are produced, and the minimum library versions.

Where the numbers come from, and how sure they are:

- Native transformers families (llava, qwen2_vl, qwen2_5_vl, idefics3, smolvlm, paligemma,
  gemma3): the architecture numbers are the checkpoints' ``config.json`` values; the parameter
  counts were obtained by building each model on the ``meta`` device from those numbers with the
  installed transformers and counting (``tests/models/test_registry.py`` repeats this), and they
  agree with the counts the model cards publish (e.g. gemma-3-4b-it 4,300,079,472).
- Remote-code families (minicpm_v, cogvlm): counted by hand from their modelling code's layer
  shapes; marked ``approximate`` in :attr:`Checkpoint.note`. Their code cannot be loaded offline.
- Image-token rules mirror the image processors' code (Qwen ``smart_resize``, Idefics3 tiling,
  MiniCPM-V slicing); processor defaults are those of the checkpoints' ``preprocessor_config.json``
  as published, which could not be re-read offline: each row says so where it matters.

Pure data and lookups: no torch, no transformers, no pydantic. ``sam2-finetune models``
(:mod:`sam2_finetune.models.table`) prints this table with memory estimates
(:func:`sam2_finetune.models.memory.estimate_memory`); :mod:`sam2_finetune.models.loading` turns
the class names into classes.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Literal

from sam2_finetune.answer_formats import qwen_smart_resize
from sam2_finetune.errors import ModelError, describe

# How a family turns an image into LM tokens; decides which data.* resolution options apply.
Resolution = Literal["fixed", "pixels", "longest_edge", "slices"]


@dataclass(frozen=True)
class Architecture:
    """The numbers of one checkpoint that memory estimates need.

    ``parameters`` is the total; ``vision_parameters`` the vision encoder; ``projector_parameters``
    the connector from vision features to the LM. Embedding (``vocab_size * hidden_size``) and,
    when untied, output-head parameters follow from the other fields. ``experts`` is 2 for CogVLM,
    whose decoder layers hold a language and a vision expert (each token uses one).
    ``patches_per_image_token`` is how many vision-encoder patches stand behind one LM image token
    (Qwen's 2x2 merge: 4; Idefics3's pixel shuffle 2: 4, SmolVLM's 4: 16; Gemma 3's pooling: 16).
    """

    parameters: int
    vision_parameters: int
    projector_parameters: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tied_embeddings: bool
    vision_hidden_size: int
    vision_intermediate_size: int
    vision_num_layers: int
    patches_per_image_token: int = 1
    experts: int = 1

    @property
    def embedding_parameters(self) -> int:
        """Input embedding plus, when untied, the output head."""
        return self.vocab_size * self.hidden_size * (1 if self.tied_embeddings else 2)

    @property
    def decoder_parameters(self) -> int:
        """The LM's decoder layers (what 8/4-bit quantisation replaces)."""
        return (
            self.parameters
            - self.vision_parameters
            - self.projector_parameters
            - self.embedding_parameters
        )


@dataclass(frozen=True)
class ImageRule:
    """How many LM tokens one image becomes, at the processor's default settings.

    - ``fixed``: every image is resized to one size: ``tokens`` tokens.
    - ``pixels`` (Qwen2-VL, Qwen2.5-VL): ``smart_resize`` to multiples of ``factor`` within
      ``min_pixels``..``max_pixels``; one token per ``factor x factor`` pixels.
    - ``longest_edge`` (Idefics3, SmolVLM): resize so the longest edge is ``longest_edge``, cut
      into ``tile_px`` tiles plus one global image when there is more than one tile; ``tokens``
      per tile.
    - ``slices`` (MiniCPM-V 2.6): the source image plus up to ``max_slices`` slices of about
      ``tile_px`` squared pixels; ``tokens`` per slice.
    """

    kind: Resolution
    tokens: int = 0
    factor: int = 28
    min_pixels: int = 0
    max_pixels: int = 0
    longest_edge: int = 0
    tile_px: int = 0
    max_slices: int = 0


@dataclass(frozen=True)
class Checkpoint:
    """One real checkpoint: its Hub name, architecture, image rule, and what is uncertain."""

    name: str
    architecture: Architecture
    image: ImageRule
    note: str = ""

    @property
    def billions(self) -> float:
        """Parameter count in billions, as model cards print it."""
        return self.architecture.parameters / 1e9


@dataclass(frozen=True)
class ModelFamily:
    """One row of :data:`FAMILIES`: everything the package knows about a family, in one place.
    The first checkpoint is the family's default.

    Loading (``models.loading`` turns the class *names* into classes; this module imports no
    torch): ``model_class`` and ``processor_class`` are transformers class names, or names from
    :mod:`sam2_finetune.models.processors` (the ``*WithoutVideo`` processors);
    ``image_processor_class`` is the PIL backend; ``model_type`` is what a checkpoint's
    ``config.json`` says, to catch a family mismatch early; ``trust_remote_code`` marks families
    whose modelling code lives in the checkpoint repositories, not in transformers.

    Prompts: ``image_placeholder`` is what the prompt text holds per image (the chat template
    writes it); the processor expands it into ``image_token`` repeated once per visual embedding
    (plus wrapper tokens for some families); a collator masks ``image_token`` out of the labels.
    ``prompt_style`` is ``"chat_template"`` (messages through ``apply_chat_template``) or
    ``"prefix_suffix"`` (PaliGemma: ``processor(text=prefix, images=..., suffix=answer)``).

    Modules: ``lora_target_modules`` is a regular expression peft matches against full module
    names (``re.fullmatch``): it selects the LM's attention and MLP projections and nothing in the
    vision tower, whose layers often share names (``q_proj``). ``language_model`` is the text
    decoder's module path. ``vision_modules``, ``projector_modules`` and ``output_head`` are full
    name prefixes: the first two are frozen when the config says so, and all three are left out of
    8/4-bit quantisation (:attr:`skip_modules`; ``llm_int8_skip_modules`` matches a prefix or
    suffix).
    """

    name: str
    title: str
    model_type: str
    model_class: str
    processor_class: str
    image_processor_class: str | None
    trust_remote_code: bool
    checkpoints: tuple[Checkpoint, ...]
    answer_format: str
    image_placeholder: str
    image_token: str
    language_model: str
    lora_target_modules: str
    vision_modules: tuple[str, ...]
    projector_modules: tuple[str, ...]
    image_tokens_note: str
    resolution: Resolution
    min_transformers: str
    output_head: str = "lm_head"
    prompt_style: Literal["chat_template", "prefix_suffix"] = "chat_template"
    notes: str = ""

    @property
    def default_checkpoint(self) -> Checkpoint:
        """The checkpoint presets and ``models`` use when none is named."""
        return self.checkpoints[0]

    @property
    def skip_modules(self) -> tuple[str, ...]:
        """Modules kept in full precision under 8/4-bit quantisation: vision tower, projector
        and output head. Quantising them costs accuracy and saves little memory (QLoRA recipes
        quantise the language model only)."""
        return (*self.vision_modules, *self.projector_modules, self.output_head)


_LM_LINEAR = "(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"

# Shared vision towers (config.json numbers).
_CLIP_L_336 = {
    "vision_hidden_size": 1024,
    "vision_intermediate_size": 4096,
    "vision_num_layers": 24,
}
_QWEN_VIT = {"vision_hidden_size": 1280, "vision_intermediate_size": 5120, "vision_num_layers": 32}
_QWEN25_VIT = {
    "vision_hidden_size": 1280,
    "vision_intermediate_size": 3420,
    "vision_num_layers": 32,
}
_SIGLIP_B = {"vision_hidden_size": 768, "vision_intermediate_size": 3072, "vision_num_layers": 12}
_SIGLIP_SO400M = {
    "vision_hidden_size": 1152,
    "vision_intermediate_size": 4304,
    "vision_num_layers": 27,
}
_EVA2_CLIP_E = {
    "vision_hidden_size": 1792,
    "vision_intermediate_size": 15360,
    "vision_num_layers": 63,
}

# Qwen2-VL / Qwen2.5-VL processors as the checkpoints ship them: 4..16384 tokens per image.
_QWEN_PIXELS = ImageRule(kind="pixels", factor=28, min_pixels=3136, max_pixels=12_845_056)

_SMOLVLM_512 = ImageRule(kind="longest_edge", tokens=64, longest_edge=2048, tile_px=512)
_SMOLVLM_384 = ImageRule(kind="longest_edge", tokens=81, longest_edge=1536, tile_px=384)
_SMOLVLM_NOTE = (
    "processor defaults (longest_edge, tile size) as published in preprocessor_config.json; "
    "not re-read offline"
)


def _arch(
    parameters: int,
    vision: int,
    projector: int,
    hidden: int,
    intermediate: int,
    layers: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    vocab: int,
    tied: bool,
    vision_numbers: dict[str, int],
    patches_per_image_token: int = 1,
    experts: int = 1,
) -> Architecture:
    return Architecture(
        parameters=parameters,
        vision_parameters=vision,
        projector_parameters=projector,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_layers=layers,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        vocab_size=vocab,
        tied_embeddings=tied,
        patches_per_image_token=patches_per_image_token,
        experts=experts,
        **vision_numbers,
    )


# The table. Literal data: adding a family or a checkpoint is adding a row. _arch columns:
# parameters, vision, projector, hidden, MLP, layers, heads, kv heads, head dim, vocab, tied
# embeddings, vision tower numbers, [patches per image token], [experts].
# fmt: off
FAMILIES: dict[str, ModelFamily] = {
    "llava": ModelFamily(
        name="llava",
        title="LLaVA-1.5 (CLIP ViT-L/336 + Vicuna)",
        model_type="llava",
        model_class="LlavaForConditionalGeneration",
        processor_class="LlavaProcessor",
        image_processor_class="LlavaImageProcessorPil",
        trust_remote_code=False,
        checkpoints=(
            Checkpoint(
                "llava-hf/llava-1.5-7b-hf",
                _arch(7_063_427_072, 303_507_456, 20_979_712, 4096, 11008, 32, 32, 32, 128,
                      32064, False, _CLIP_L_336),
                ImageRule(kind="fixed", tokens=576),
            ),
            Checkpoint(
                "llava-hf/llava-1.5-13b-hf",
                _arch(13_351_494_656, 303_507_456, 31_467_520, 5120, 13824, 40, 40, 40, 128,
                      32064, False, _CLIP_L_336),
                ImageRule(kind="fixed", tokens=576),
            ),
        ),
        answer_format="json",
        image_placeholder="<image>",
        image_token="<image>",
        language_model="model.language_model",
        lora_target_modules=rf".*language_model.*\.{_LM_LINEAR}",
        vision_modules=("model.vision_tower",),
        projector_modules=("model.multi_modal_projector",),
        image_tokens_note="'<image>' expands to 576 tokens (336 px, 24x24 patches, CLS dropped); "
        "the frame is resized to a square",
        resolution="fixed",
        min_transformers="4.36.0",
        notes="Its native box text is [x1, y1, x2, y2] in 0-1 of the padded square; the generic "
        "json format (0-1000) is used instead.",
    ),
    "qwen2_vl": ModelFamily(
        name="qwen2_vl",
        title="Qwen2-VL",
        model_type="qwen2_vl",
        model_class="Qwen2VLForConditionalGeneration",
        processor_class="Qwen2VLProcessorWithoutVideo",
        image_processor_class="Qwen2VLImageProcessorPil",
        trust_remote_code=False,
        checkpoints=(
            Checkpoint(
                "Qwen/Qwen2-VL-2B-Instruct",
                _arch(2_208_985_600, 631_183_360, 34_087_936, 1536, 8960, 28, 12, 2, 128,
                      151936, True, _QWEN_VIT, patches_per_image_token=4),
                _QWEN_PIXELS,
            ),
            Checkpoint(
                "Qwen/Qwen2-VL-7B-Instruct",
                _arch(8_291_375_616, 631_183_360, 44_575_744, 3584, 18944, 28, 28, 4, 128,
                      152064, False, _QWEN_VIT, patches_per_image_token=4),
                _QWEN_PIXELS,
            ),
        ),
        answer_format="qwen2_vl",
        image_placeholder="<|vision_start|><|image_pad|><|vision_end|>",
        image_token="<|image_pad|>",
        language_model="model.language_model",
        lora_target_modules=rf".*language_model.*\.{_LM_LINEAR}",
        vision_modules=("model.visual.patch_embed", "model.visual.blocks"),
        projector_modules=("model.visual.merger",),
        image_tokens_note="'<|image_pad|>' repeated once per 28x28 pixels after smart_resize "
        "(4..16384 tokens by default: bound them with data.min_pixels / data.max_pixels)",
        resolution="pixels",
        min_transformers="4.45.0",
    ),
    "qwen2_5_vl": ModelFamily(
        name="qwen2_5_vl",
        title="Qwen2.5-VL",
        model_type="qwen2_5_vl",
        model_class="Qwen2_5_VLForConditionalGeneration",
        processor_class="Qwen2_5_VLProcessorWithoutVideo",
        image_processor_class="Qwen2VLImageProcessorPil",
        trust_remote_code=False,
        checkpoints=(
            Checkpoint(
                "Qwen/Qwen2.5-VL-7B-Instruct",
                _arch(8_292_166_656, 631_975_680, 44_574_464, 3584, 18944, 28, 28, 4, 128,
                      152064, False, _QWEN25_VIT, patches_per_image_token=4),
                _QWEN_PIXELS,
            ),
            Checkpoint(
                "Qwen/Qwen2.5-VL-3B-Instruct",
                _arch(3_754_622_976, 631_975_680, 36_708_608, 2048, 11008, 36, 16, 2, 128,
                      151936, True, _QWEN25_VIT, patches_per_image_token=4),
                _QWEN_PIXELS,
            ),
        ),
        answer_format="qwen2_5_vl",
        image_placeholder="<|vision_start|><|image_pad|><|vision_end|>",
        image_token="<|image_pad|>",
        language_model="model.language_model",
        lora_target_modules=rf".*language_model.*\.{_LM_LINEAR}",
        vision_modules=("model.visual.patch_embed", "model.visual.blocks"),
        projector_modules=("model.visual.merger",),
        image_tokens_note="as Qwen2-VL; boxes are absolute pixels of the smart_resize'd image",
        resolution="pixels",
        min_transformers="4.49.0",
    ),
    "idefics3": ModelFamily(
        name="idefics3",
        title="Idefics3 and SmolVLM v1 (SigLIP + Llama-style LM, image tiling)",
        model_type="idefics3",
        model_class="Idefics3ForConditionalGeneration",
        processor_class="Idefics3Processor",
        image_processor_class="Idefics3ImageProcessorPil",
        trust_remote_code=False,
        checkpoints=(
            Checkpoint(
                "HuggingFaceM4/Idefics3-8B-Llama3",
                _arch(8_462_086_384, 412_926_192, 18_874_368, 4096, 14336, 32, 32, 8, 128,
                      128259, False, _SIGLIP_SO400M, patches_per_image_token=4),
                ImageRule(kind="longest_edge", tokens=169, longest_edge=1456, tile_px=364),
            ),
            Checkpoint(
                "HuggingFaceTB/SmolVLM-256M-Instruct",
                _arch(256_484_928, 86_433_024, 7_077_888, 576, 1536, 30, 9, 3, 64,
                      49280, False, _SIGLIP_B, patches_per_image_token=16),
                _SMOLVLM_512,
                note=_SMOLVLM_NOTE,
            ),
            Checkpoint(
                "HuggingFaceTB/SmolVLM-500M-Instruct",
                _arch(507_482_304, 86_433_024, 11_796_480, 960, 2560, 32, 15, 5, 64,
                      49280, False, _SIGLIP_B, patches_per_image_token=16),
                _SMOLVLM_512,
                note=_SMOLVLM_NOTE,
            ),
            Checkpoint(
                "HuggingFaceTB/SmolVLM-Instruct",
                _arch(2_246_272_880, 412_987_248, 21_233_664, 2048, 8192, 24, 32, 32, 64,
                      49155, False, _SIGLIP_SO400M, patches_per_image_token=9),
                _SMOLVLM_384,
                note=_SMOLVLM_NOTE,
            ),
        ),
        answer_format="json",
        image_placeholder="<image>",
        image_token="<image>",
        language_model="model.text_model",
        lora_target_modules=rf".*text_model.*\.{_LM_LINEAR}",
        vision_modules=("model.vision_model",),
        projector_modules=("model.connector",),
        image_tokens_note="'<image>' expands per tile: <fake_token_around_image><row_i_col_j> + "
        "image_seq_len tokens, then a global image; 169 tokens per 364 px tile (Idefics3), 64 per "
        "512 px tile (SmolVLM 256M/500M)",
        resolution="longest_edge",
        min_transformers="4.46.0",
        notes="SmolVLM v1 checkpoints are Idefics3 models (config model_type 'idefics3').",
    ),
    "smolvlm": ModelFamily(
        name="smolvlm",
        title="SmolVLM2 (SigLIP + SmolLM2, image tiling)",
        model_type="smolvlm",
        model_class="SmolVLMForConditionalGeneration",
        processor_class="SmolVLMProcessorWithoutVideo",
        image_processor_class="SmolVLMImageProcessorPil",
        trust_remote_code=False,
        checkpoints=(
            Checkpoint(
                "HuggingFaceTB/SmolVLM2-256M-Video-Instruct",
                _arch(256_484_928, 86_433_024, 7_077_888, 576, 1536, 30, 9, 3, 64,
                      49280, False, _SIGLIP_B, patches_per_image_token=16),
                _SMOLVLM_512,
                note="same architecture as SmolVLM-256M (SmolVLM2 release notes); " + _SMOLVLM_NOTE,
            ),
            Checkpoint(
                "HuggingFaceTB/SmolVLM2-500M-Video-Instruct",
                _arch(507_482_304, 86_433_024, 11_796_480, 960, 2560, 32, 15, 5, 64,
                      49280, False, _SIGLIP_B, patches_per_image_token=16),
                _SMOLVLM_512,
                note="same architecture as SmolVLM-500M; " + _SMOLVLM_NOTE,
            ),
            Checkpoint(
                "HuggingFaceTB/SmolVLM2-2.2B-Instruct",
                _arch(2_246_784_880, 412_987_248, 21_233_664, 2048, 8192, 24, 32, 32, 64,
                      49280, False, _SIGLIP_SO400M, patches_per_image_token=9),
                _SMOLVLM_384,
                note="vocabulary size 49280 assumed (SmolVLM v1 2.2B: 49155); " + _SMOLVLM_NOTE,
            ),
        ),
        answer_format="json",
        image_placeholder="<image>",
        image_token="<image>",
        language_model="model.text_model",
        lora_target_modules=rf".*text_model.*\.{_LM_LINEAR}",
        vision_modules=("model.vision_model",),
        projector_modules=("model.connector",),
        image_tokens_note="as idefics3: 64 tokens per 512 px tile plus a global image",
        resolution="longest_edge",
        min_transformers="4.50.0",
        notes="SmolVLM v1 checkpoints (HuggingFaceTB/SmolVLM-256M-Instruct, ...) are Idefics3 "
        "models: use family idefics3 for them.",
    ),
    "paligemma": ModelFamily(
        name="paligemma",
        title="PaliGemma / PaliGemma 2 (SigLIP-So400m + Gemma / Gemma 2)",
        model_type="paligemma",
        model_class="PaliGemmaForConditionalGeneration",
        processor_class="PaliGemmaProcessor",
        image_processor_class="SiglipImageProcessorPil",
        trust_remote_code=False,
        checkpoints=(
            Checkpoint(
                "google/paligemma2-3b-pt-224",
                _arch(3_032_242_416, 412_442_352, 2_656_512, 2304, 9216, 26, 8, 4, 256,
                      257216, True, _SIGLIP_SO400M),
                ImageRule(kind="fixed", tokens=256),
            ),
            Checkpoint(
                "google/paligemma2-3b-pt-448",
                _arch(3_033_127_152, 413_327_088, 2_656_512, 2304, 9216, 26, 8, 4, 256,
                      257216, True, _SIGLIP_SO400M),
                ImageRule(kind="fixed", tokens=1024),
            ),
            Checkpoint(
                "google/paligemma2-10b-pt-224",
                _arch(9_662_638_832, 412_442_352, 4_132_352, 3584, 14336, 42, 16, 8, 256,
                      257216, True, _SIGLIP_SO400M),
                ImageRule(kind="fixed", tokens=256),
            ),
            Checkpoint(
                "google/paligemma-3b-pt-224",
                _arch(2_923_466_480, 412_442_352, 2_361_344, 2048, 16384, 18, 8, 1, 256,
                      257216, True, _SIGLIP_SO400M),
                ImageRule(kind="fixed", tokens=256),
            ),
        ),
        answer_format="paligemma",
        image_placeholder="<image>",
        image_token="<image>",
        language_model="model.language_model",
        prompt_style="prefix_suffix",
        lora_target_modules=rf".*language_model.*\.{_LM_LINEAR}",
        vision_modules=("model.vision_tower",),
        projector_modules=("model.multi_modal_projector",),
        image_tokens_note="'<image>' x 256 (224 px) or x 1024 (448 px) before BOS; the "
        "processor's suffix= builds the labels; token_type_ids mark the prefix",
        resolution="fixed",
        min_transformers="4.47.0",
        notes="No chat template: prompts are prefix/suffix. PaliGemma 1 needs transformers 4.41.",
    ),
    "minicpm_v": ModelFamily(
        name="minicpm_v",
        title="MiniCPM-V 2.6 (SigLIP-So400m + resampler + Qwen2-7B), remote code",
        model_type="minicpmv",
        model_class="AutoModel",
        processor_class="AutoProcessor",
        image_processor_class=None,
        trust_remote_code=True,
        checkpoints=(
            Checkpoint(
                "openbmb/MiniCPM-V-2_6",
                _arch(8_099_000_000, 417_792_240, 68_600_000, 3584, 18944, 28, 28, 4, 128,
                      151666, False, _SIGLIP_SO400M, patches_per_image_token=16),
                ImageRule(kind="slices", tokens=64, tile_px=448, max_slices=9),
                note="approximate: counted by hand from its remote modelling code (card: 8B)",
            ),
        ),
        answer_format="minicpm_v",
        image_placeholder="(<image>./</image>)",
        image_token="<unk>",
        language_model="llm",
        output_head="llm.lm_head",
        lora_target_modules=rf"llm\..*\.{_LM_LINEAR}",
        vision_modules=("vpm",),
        projector_modules=("resampler",),
        image_tokens_note="'(<image>./</image>)' becomes 64 resampler queries for the image and "
        "64 per slice (up to 9 slices of about 448x448 px)",
        resolution="slices",
        min_transformers="4.40.0",
        notes="Its remote code was written for transformers 4.40-4.4x and may not load under "
        "transformers 5; transformers >= 5 ships a native MiniCPM-V 4.6 (not in this table: its "
        "numbers are unverified here).",
    ),
    "cogvlm": ModelFamily(
        name="cogvlm",
        title="CogVLM (EVA2-CLIP-E + visual-expert Vicuna / Llama 3), remote code",
        model_type="cogvlm",
        model_class="AutoModelForCausalLM",
        processor_class="AutoTokenizer",
        image_processor_class=None,
        trust_remote_code=True,
        checkpoints=(
            Checkpoint(
                "THUDM/cogvlm-chat-hf",
                _arch(17_640_187_456, 4_282_750_528, 142_622_720, 4096, 11008, 32, 32, 32, 128,
                      32000, False, _EVA2_CLIP_E, experts=2),
                ImageRule(kind="fixed", tokens=1227),
                note="approximate: counted by hand from its remote modelling code (card: 17B, "
                "10B vision + 7B language); tokenizer from lmsys/vicuna-7b-v1.5",
            ),
            Checkpoint(
                "THUDM/cogvlm2-llama3-chat-19B",
                _arch(19_500_000_000, 4_300_000_000, 197_000_000, 4096, 14336, 32, 32, 8, 128,
                      128256, False, _EVA2_CLIP_E, patches_per_image_token=4, experts=2),
                ImageRule(kind="fixed", tokens=2306),
                note="approximate: 1344 px, 96x96 patches merged 2x2 to 2304 tokens + 2 "
                "(card: 19B)",
            ),
        ),
        answer_format="json",
        image_placeholder="",
        image_token="",
        language_model="model.layers",
        lora_target_modules=(
            r"model\.layers\.\d+\.(self_attn\.(language|vision)_expert_(query_key_value|dense)"
            r"|mlp\.(language|vision)_mlp\.(gate_proj|up_proj|down_proj))"
        ),
        vision_modules=("model.vision.patch_embedding", "model.vision.transformer"),
        projector_modules=("model.vision.linear_proj",),
        image_tokens_note="1225 patch tokens (490 px) between learned boi/eoi embeddings; "
        "token_type_ids route them through the vision expert of every layer",
        resolution="fixed",
        min_transformers="4.35.0",
        notes="Its remote code targets transformers 4.3x-4.4x and may not load under "
        "transformers 5. Native grounding text is [[x0,y0,x1,y1]] in 0-999; json is used.",
    ),
    "gemma3": ModelFamily(
        name="gemma3",
        title="Gemma 3 (SigLIP-So400m 896 px + Gemma 3)",
        model_type="gemma3",
        model_class="Gemma3ForConditionalGeneration",
        processor_class="Gemma3Processor",
        image_processor_class="Gemma3ImageProcessorPil",
        trust_remote_code=False,
        checkpoints=(
            Checkpoint(
                "google/gemma-3-4b-it",
                _arch(4_300_079_472, 416_866_032, 2_950_272, 2560, 10240, 34, 8, 4, 256,
                      262208, True, _SIGLIP_SO400M, patches_per_image_token=16),
                ImageRule(kind="fixed", tokens=256),
            ),
            Checkpoint(
                "google/gemma-3-12b-it",
                _arch(12_187_325_040, 416_866_032, 4_424_832, 3840, 15360, 48, 16, 8, 256,
                      262208, True, _SIGLIP_SO400M, patches_per_image_token=16),
                ImageRule(kind="fixed", tokens=256),
            ),
            Checkpoint(
                "google/gemma-3-27b-it",
                _arch(27_432_406_640, 416_866_032, 6_194_304, 5376, 21504, 62, 32, 16, 128,
                      262208, True, _SIGLIP_SO400M, patches_per_image_token=16),
                ImageRule(kind="fixed", tokens=256),
            ),
        ),
        answer_format="json",
        image_placeholder="<start_of_image>",
        image_token="<image_soft_token>",
        language_model="model.language_model",
        lora_target_modules=rf".*language_model.*\.{_LM_LINEAR}",
        vision_modules=("model.vision_tower",),
        projector_modules=("model.multi_modal_projector",),
        image_tokens_note="'<start_of_image>' expands to 256 '<image_soft_token>' (896 px, 4096 "
        "patches pooled 4x4); token_type_ids give image tokens bidirectional attention",
        resolution="fixed",
        min_transformers="4.50.0",
        notes="Pan-and-scan (extra crops) is off by default and not modelled here.",
    ),
}
# fmt: on

# Hub name -> family name, for checks that a named checkpoint matches its family.
CHECKPOINT_FAMILY: dict[str, str] = {
    checkpoint.name: family.name
    for family in FAMILIES.values()
    for checkpoint in family.checkpoints
}


def get_family(name: str) -> ModelFamily:
    """The :data:`FAMILIES` row ``name``; else a :class:`ModelError` naming the closest family."""
    try:
        return FAMILIES[name]
    except KeyError:
        close = difflib.get_close_matches(name, FAMILIES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ModelError(
            describe(
                f"unknown model family {name!r}",
                field="family",
                expected=" | ".join(FAMILIES),
                found=repr(name),
                fix=hint + "`sam2-finetune models` lists the families",
            )
        ) from None


def get_checkpoint(name: str) -> Checkpoint:
    """The registry row of the checkpoint ``name`` (a Hub id); :class:`ModelError` if unknown."""
    family = CHECKPOINT_FAMILY.get(name)
    if family is None:
        close = difflib.get_close_matches(name, CHECKPOINT_FAMILY, n=1)
        raise ModelError(
            describe(
                f"checkpoint {name!r} is not in the model registry",
                field="checkpoint",
                fix=(f"did you mean {close[0]!r}? " if close else "")
                + "`sam2-finetune models` lists the known checkpoints; estimates for others "
                "need an Architecture",
            )
        )
    return next(c for c in FAMILIES[family].checkpoints if c.name == name)


def _idefics3_tiles(height: int, width: int, longest_edge: int, tile: int) -> int:
    # Mirrors Idefics3ImageProcessor.get_number_of_image_patches: longest edge to `longest_edge`
    # (even), sides rounded up to whole tiles, plus one global image when split.
    if width >= height:
        width, height = longest_edge, int(longest_edge / (width / height))
        height += height % 2
    else:
        height, width = longest_edge, int(longest_edge * (width / height))
        width += width % 2
    rows, cols = math.ceil(height / tile), math.ceil(width / tile)
    return 1 if rows * cols == 1 else rows * cols + 1


def _minicpm_slices(height: int, width: int, tile: int, max_slices: int) -> int:
    # Mirrors MiniCPM-V 2.6's get_sliced_grid: pick a grid whose aspect is closest to the image's
    # among grids of multiple-1..multiple+1 slices.
    multiple = min(math.ceil(width * height / (tile * tile)), max_slices)
    if multiple <= 1:
        return 0
    log_ratio = math.log(width / height)
    best, best_error = 0, float("inf")
    for count in (multiple - 1, multiple, multiple + 1):
        if count == 1 or count > max_slices:
            continue
        for m in range(1, count + 1):
            if count % m == 0:
                error = abs(log_ratio - math.log(m / (count // m)))
                if error < best_error:
                    best, best_error = count, error
    return best


def image_tokens(
    rule: ImageRule,
    width: int,
    height: int,
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    longest_edge: int | None = None,
    max_slices: int | None = None,
) -> int:
    """LM tokens for one ``width`` x ``height`` image under ``rule`` (``None``: the default).

    Counts the image-placeholder tokens only, not the few wrapper tokens some families add.

    >>> image_tokens(FAMILIES["qwen2_vl"].default_checkpoint.image, 1280, 720)
    1196
    >>> image_tokens(FAMILIES["qwen2_vl"].default_checkpoint.image, 1280, 720, max_pixels=200_704)
    252
    """
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if rule.kind == "fixed":
        return rule.tokens
    if rule.kind == "pixels":
        lo = rule.min_pixels if min_pixels is None else min_pixels
        hi = rule.max_pixels if max_pixels is None else max_pixels
        h_bar, w_bar = qwen_smart_resize(height, width, rule.factor, lo, hi)
        return (h_bar // rule.factor) * (w_bar // rule.factor)
    if rule.kind == "longest_edge":
        edge = rule.longest_edge if longest_edge is None else longest_edge
        return _idefics3_tiles(height, width, edge, rule.tile_px) * rule.tokens
    slices = _minicpm_slices(
        height, width, rule.tile_px, rule.max_slices if max_slices is None else max_slices
    )
    return (1 + slices) * rule.tokens
