"""What a `casa-eval train` run does (also the schema of its stored `train_settings.json`; unknown keys are
rejected) and the lab model every mechanism is built on."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from casa_eval.data.lab.tasks import LAB_TASKS
from casa_eval.fusion.mechanisms import BUILTIN, check_mechanism_name

# The lab model: a 4-layer Qwen2 of width 128 and a 2-layer SigLIP tower of width 64 over 32 px images (64
# visual tokens), with the lab's 512-id tokenizer — about 0.8M parameters, 3 MB in float32, so every
# mechanism's trained checkpoint ships with the package (docs/lab.md says why these sizes).
# What each training step draws from (shares of the steps): the fine-grained look-up is the slowest thing to
# learn, so its easiest level gets the most steps; the coarse task's "colour" read-out is what the fine-grained
# questions build on ("colour" then the cell).
LAB_MIX: dict[str, float] = {"lab_fine_1": 3, "lab_fine_2": 1, "lab_fine_3": 1, "lab_fine_4": 1, "lab_coarse": 2,
                             "lab_recall": 2}
# A bare completion format: "<|im_start|>user", the images, the question, then the answer after a space. The two
# tokens before the first image matter: without them the look-up of the fine-grained task is not learned
# within the budget (docs/lab.md, "Why the tasks look like this").
LAB_PROMPT: dict[str, str] = {"user_prefix": "<|im_start|>user", "assistant_prefix": "", "turn_end": "\n",
                              "answer_prefix": " "}
LAB_MODEL: dict[str, Any] = {
    "backbone": {"hidden_size": 128, "intermediate_size": 256, "num_layers": 4, "num_heads": 4, "num_kv_heads": 2,
                 "vocab_size": 512},
    "vision": {"hidden_size": 64, "intermediate_size": 128, "num_layers": 2, "num_heads": 4, "patch_size": 4,
               "image_size": 32, "position_init": "sincos"},
    "qformer_queries": 16,
    "qformer_layers": 1,
    "registers": 8,
    "attention_backend": "sdpa",  # flex has no backward on CPU; every mechanism uses the same backend
    "dtype": "float32",
    "tokenizer": "lab",
    "prompt": LAB_PROMPT,
}


class TrainSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mechanisms: list[str] = Field(default_factory=lambda: list(BUILTIN))
    tasks: dict[str, float] = Field(default_factory=lambda: dict(LAB_MIX), description="lab task -> share of the "
                                    "training steps; ignored when `data` is given")
    data: Path | None = Field(None, description="a dataset folder of your own (docs/lab.md) instead of the lab tasks")
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(16, ge=1, description="examples per optimiser step (the global batch)")
    learning_rate: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(50, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="the cosine schedule ends at this fraction of the "
                                "learning rate")
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = Field(1.0, gt=0)
    seeds: list[int] = Field(default_factory=lambda: [0])
    threads: int = Field(2, ge=1, description="CPU threads (fixed, so the same command gives the same weights)")
    save_every: int = Field(100, ge=1, description="steps between resumable states")
    freeze: list[Literal["backbone", "vision"]] = Field(default_factory=list)
    device: str = "cpu"
    model: dict[str, Any] = Field(default_factory=lambda: dict(LAB_MODEL), description="zoo FusionConfig fields "
                                  "shared by every mechanism (no `mechanism`, no `seed`)")

    @field_validator("mechanisms")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        for name in value:
            check_mechanism_name(name)
        if not value:
            raise ValueError("no mechanisms given")
        return value

    @field_validator("tasks", mode="before")
    @classmethod
    def _lab_tasks(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):  # a plain list: an even mix
            value = dict.fromkeys(value, 1.0)
        unknown = [t for t in value if t not in LAB_TASKS]
        if unknown:
            raise ValueError(f"unknown lab task {unknown[0]!r}; lab tasks: {', '.join(LAB_TASKS)}")
        if not value or any(float(w) <= 0 for w in value.values()):
            raise ValueError("lab task shares must be positive")
        return value

    @field_validator("model")
    @classmethod
    def _shared_only(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in ("mechanism", "seed"):
            if key in value:
                raise ValueError(f"model.{key} is set per run (--mechanisms, --seeds), not in the shared model")
        return value
