"""Configuration of a zoo model: one backbone, one vision tower, one fusion mechanism.

Every mechanism in a comparison is built from the same `BackboneConfig` and `VisionConfig`; only
`FusionConfig.mechanism` (and the mechanism's own knobs) differ. Unknown keys are rejected so a typo in a
profile or a checkpoint fails loudly.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MechanismName = Literal[
    "insertion",
    "qformer",
    "cross_attention",
    "gated_cross_attention",
    "register_cross_attention",
    "casa",
    "casa_shared",
    "text_only",
]
MECHANISMS: tuple[str, ...] = MechanismName.__args__  # type: ignore[attr-defined]

# `dense` is the global-mask reference: exact but quadratic in the number of windows; tests use it.
AttentionBackend = Literal["auto", "sdpa", "flex", "flash", "dense"]
DType = Literal["float32", "bfloat16", "float16"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackboneConfig(_Strict):
    """A decoder-only causal LM, built with transformers' `AutoConfig.for_model(family, ...)`.

    The defaults are a tiny Qwen2 (random weights) whose vocabulary fits the GPT-2 BPE tokenizer the zoo ships
    with. `extra` is passed to the transformers config verbatim (e.g. `{"head_dim": 128}`).
    """

    family: str = "qwen2"
    hidden_size: int = Field(128, gt=0)
    intermediate_size: int = Field(352, gt=0)
    num_layers: int = Field(4, gt=0)
    num_heads: int = Field(4, gt=0)
    num_kv_heads: int = Field(2, gt=0)
    vocab_size: int = Field(50304, gt=0)
    max_position_embeddings: int = Field(65536, gt=0)
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = True
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _heads_divide(self) -> BackboneConfig:
        if self.hidden_size % self.num_heads and "head_dim" not in self.extra:
            raise ValueError("hidden_size must be divisible by num_heads (or set extra.head_dim)")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("num_heads must be a multiple of num_kv_heads")
        return self

    @property
    def head_dim(self) -> int:
        return int(self.extra.get("head_dim", self.hidden_size // self.num_heads))


class VisionConfig(_Strict):
    """A SigLIP patch encoder plus a projector that turns one image into `num_image_tokens` LM-width tokens.

    `merge` is the projector's spatial merge factor (Qwen2.5-VL merges 2x2 patches): tokens per image =
    (image_size / patch_size / merge) ** 2. Use `VisionConfig.for_tokens` to size it from a token count.
    """

    hidden_size: int = Field(64, gt=0)
    intermediate_size: int = Field(128, gt=0)
    num_layers: int = Field(2, ge=0)
    num_heads: int = Field(4, gt=0)
    patch_size: int = Field(8, gt=0)
    image_size: int = Field(64, gt=0)
    merge: int = Field(1, gt=0)
    # How patch positions start: SigLIP's random embedding, or a fixed 2-D sine-cosine pattern (MAE-style;
    # still trained) that tells patches apart by row and column from step 0 — the lab's choice.
    position_init: Literal["random", "sincos"] = "random"

    @model_validator(mode="after")
    def _grid_fits(self) -> VisionConfig:
        if self.image_size % (self.patch_size * self.merge):
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of patch_size*merge "
                f"({self.patch_size}*{self.merge})"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError("vision hidden_size must be divisible by num_heads")
        return self

    @property
    def num_image_tokens(self) -> int:
        side = self.image_size // (self.patch_size * self.merge)
        return side * side

    @classmethod
    def for_tokens(cls, num_image_tokens: int, **kwargs: Any) -> VisionConfig:
        """A vision config whose images give exactly `num_image_tokens` tokens (a perfect square)."""
        side = round(num_image_tokens**0.5)
        if side * side != num_image_tokens:
            raise ValueError(f"num_image_tokens must be a perfect square, got {num_image_tokens}")
        patch = kwargs.pop("patch_size", cls.model_fields["patch_size"].default)
        merge = kwargs.pop("merge", cls.model_fields["merge"].default)
        return cls(image_size=side * patch * merge, patch_size=patch, merge=merge, **kwargs)


class PromptConfig(_Strict):
    """How a user turn is framed: `user_prefix`, then the images and the user's text, then `assistant_prefix`;
    `turn_end` closes the model's answer. The default is a ChatML template; the lab models are trained on a
    bare completion format (empty prefixes), where the question's last token sits right before the answer."""

    user_prefix: str = "<|im_start|>user\n"
    assistant_prefix: str = "<|im_end|>\n<|im_start|>assistant\n"
    turn_end: str = "<|im_end|>\n"
    answer_prefix: str = Field("", description="what a trained answer starts with (the lab's: a space)")


class FusionConfig(_Strict):
    """Everything needed to build a zoo model with random weights (and to rebuild it from a checkpoint)."""

    mechanism: str = "casa"
    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    vision: VisionConfig = Field(default_factory=VisionConfig)
    # Backbone layer indices that get a fusion sublayer (CA family, CASA). None = every second layer from 0.
    fusion_layers: tuple[int, ...] | None = None
    qformer_queries: int = Field(32, gt=0)
    qformer_layers: int = Field(2, gt=0)
    registers: int = Field(8, gt=0)
    # How CASA rotates image keys: at the window's insertion position (MI-RoPE-like) or not at all.
    casa_image_rope: Literal["insertion", "none"] = "insertion"
    attention_backend: AttentionBackend = "auto"
    dtype: DType = "float32"
    seed: int = 0
    # The tokenizer a model built from this config gets (a checkpoint carries its own): GPT-2's BPE or the
    # lab's 512-id byte-level BPE.
    tokenizer: Literal["gpt2", "lab"] = "gpt2"
    prompt: PromptConfig = Field(default_factory=PromptConfig)

    @field_validator("mechanism")
    @classmethod
    def _known_mechanism(cls, value: str) -> str:
        from casa_eval.fusion.mechanisms import check_mechanism_name

        return check_mechanism_name(value)

    @model_validator(mode="after")
    def _resolve_layers(self) -> FusionConfig:
        n = self.backbone.num_layers
        if self.fusion_layers is None:
            object.__setattr__(self, "fusion_layers", tuple(range(0, n, 2)))
        layers = self.fusion_layers or ()
        bad = [i for i in layers if not 0 <= i < n]
        if bad:
            raise ValueError(f"fusion_layers {bad} out of range for a {n}-layer backbone")
        if len(set(layers)) != len(layers):
            raise ValueError("fusion_layers has duplicates")
        object.__setattr__(self, "fusion_layers", tuple(sorted(layers)))
        return self

    @property
    def num_image_tokens(self) -> int:
        return self.vision.num_image_tokens

    def with_mechanism(self, mechanism: str) -> FusionConfig:
        """The same backbone, vision and knobs with another mechanism: the fair-comparison constructor."""
        return FusionConfig.model_validate({**self.model_dump(), "mechanism": mechanism})
