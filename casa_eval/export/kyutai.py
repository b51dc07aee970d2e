"""Export a zoo model as a Kyutai-compatible remote-code checkpoint directory.

`AutoModel.from_pretrained(DIR, trust_remote_code=True)` and `AutoProcessor.from_pretrained(DIR,
trust_remote_code=True)` then give a model and a processor with the interface Kyutai's scripts use on
`kyutai/CASA-*` (see `kyutai_remote/modeling_casa_zoo.py`), so casa-eval's Kyutai adapter — and Kyutai's
own scripts — can be exercised offline. The modeling code imports casa-eval, which must be installed.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from casa_eval.fusion import FusionConfig, FusionModel
from casa_eval.fusion.tokenizer import IMAGE_END, IMAGE_START

REMOTE = Path(__file__).resolve().parent / "kyutai_remote"
REMOTE_FILES = ("configuration_casa_zoo.py", "modeling_casa_zoo.py", "processing_casa_zoo.py")


def export_kyutai(model: FusionModel, out: Path) -> Path:
    """Write `model` (weights, config, tokenizer, processor, remote code) to `out`."""
    import sys

    out.mkdir(parents=True, exist_ok=True)
    for name in REMOTE_FILES:
        shutil.copyfile(REMOTE / name, out / name)
    sys.path.insert(0, str(REMOTE.parent))
    try:
        from kyutai_remote.configuration_casa_zoo import CasaZooConfig
        from kyutai_remote.modeling_casa_zoo import CasaZooModel
        from kyutai_remote.processing_casa_zoo import CasaZooProcessor
    finally:
        sys.path.remove(str(REMOTE.parent))
    tokenizer = model.tokenizer
    # an untied copy of the LM head: the checkpoint then needs no tied-weight declaration on any transformers
    fusion = model.config.model_dump(mode="json")
    fusion["backbone"]["tie_word_embeddings"] = False
    ids = tokenizer.convert_tokens_to_ids
    config = CasaZooConfig(
        fusion=fusion, pre_image_tokens=[ids(IMAGE_START)], post_image_tokens=[ids(IMAGE_END)],
        image_size=model.config.vision.image_size, eos_token_id=[tokenizer.eos_token_id, ids("<|im_end|>")],
        pad_token_id=tokenizer.pad_token_id,
        auto_map={"AutoConfig": "configuration_casa_zoo.CasaZooConfig", "AutoModel": "modeling_casa_zoo.CasaZooModel",
                  "AutoProcessor": "processing_casa_zoo.CasaZooProcessor"})
    exported = CasaZooModel(config)
    exported.zoo.load_state_dict(model.state_dict(), strict=True)  # raises on any missing or extra key
    exported.save_pretrained(out)
    processor = CasaZooProcessor(tokenizer, config.image_size, config.pre_image_tokens, config.post_image_tokens,
                                 model.config.vision.patch_size)
    processor.save_pretrained(out)
    generation = {"eos_token_id": config.eos_token_id, "pad_token_id": tokenizer.pad_token_id, "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    return out


def export_zoo_mechanism(mechanism: str, out: Path, *, seed: int = 0, zoo: dict[str, object] | None = None) -> Path:
    """A tiny random zoo model of `mechanism`, exported with Kyutai's interface."""
    config = FusionConfig.model_validate({**(zoo or {}), "mechanism": mechanism, "seed": seed})
    return export_kyutai(FusionModel(config), out)
