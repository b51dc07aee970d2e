"""Remote-code processor of a zoo model exported with Kyutai's CASA interface (copied into the export).

`tokenize_messages(messages, suppress_bos_token=False)` turns a chat — `[{"role": ..., "content": [{"type":
"image", "image": PIL | path | None}, {"type": "text", "text": ...}]}]` — into `input_ids` holding the text
and the `pre_image_tokens` / `post_image_tokens` around each image, `image_embeds_insertion_points` (indices
into `input_ids` where each image goes, as Kyutai's scripts expect) and `pixel_values` (one tensor per image
given as a picture; `None` images mean the caller supplies pixels). Chat format: `<|im_start|>role\\n ...
<|im_end|>\\n` turns, a trailing `<|im_start|>assistant\\n` after a user turn, and an assistant turn left
open when it is the last message (streaming continues it). An assistant turn opens with `asst_start_tokens`
and closes with `asst_end_tokens`, attributes a caller may empty as Kyutai's streaming benchmark does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import AutoTokenizer, BatchFeature

PROCESSOR_FILE = "processor_config.json"


class ZooImageProcessor:
    def __init__(self, image_size: int, patch_size: int) -> None:
        self.image_size = image_size
        self.patch_size = patch_size

    def process_images(self, images: Any, img_size: int | None = None) -> torch.Tensor:
        """Pictures -> [N, h_patches, w_patches, 3 x patch x patch] in [-1, 1]: the zoo's preprocessing in the
        layout of Kyutai's processor ((1, h, w, 588) for one 14 px-patch image, which callers squeeze)."""
        from casa_eval.fusion.vision import preprocess_images

        items = images if isinstance(images, (list, tuple)) else [images]
        pixels = preprocess_images([_open(i) for i in items], img_size or self.image_size)
        n, _, size, _ = pixels.shape
        p, side = self.patch_size, size // self.patch_size
        return pixels.view(n, 3, side, p, side, p).permute(0, 2, 4, 1, 3, 5).reshape(n, side, side, 3 * p * p)


class CasaZooProcessor:
    def __init__(self, tokenizer: Any, image_size: int, pre_image_tokens: list[int],
                 post_image_tokens: list[int], patch_size: int = 8) -> None:
        self.tokenizer = tokenizer
        self.image_size = image_size
        self.patch_size = patch_size
        self.pre_image_tokens = list(pre_image_tokens)
        self.post_image_tokens = list(post_image_tokens)
        self.image_processor = ZooImageProcessor(image_size, patch_size)
        self._image_processor = self.image_processor
        # what opens and closes an assistant turn; Kyutai's streaming benchmark empties them to continue one turn
        self.asst_start_tokens = self._encode("<|im_start|>assistant\n")
        self.asst_end_tokens = self._encode("<|im_end|>\n")

    @classmethod
    def register_for_auto_class(cls, auto_class: str = "AutoProcessor") -> None:
        """transformers' AutoProcessor calls this on remote-code classes; nothing to register here."""

    @classmethod
    def from_pretrained(cls, path: str | Path, image_size: int | None = None, **kwargs: Any) -> CasaZooProcessor:
        directory = Path(path)
        config = json.loads((directory / PROCESSOR_FILE).read_text())
        tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=True)  # this code is already trusted
        return cls(tokenizer, image_size or config["image_size"], config["pre_image_tokens"],
                   config["post_image_tokens"], config.get("patch_size", 8))

    def save_pretrained(self, path: str | Path) -> None:
        directory = Path(path)
        self.tokenizer.save_pretrained(directory)
        config = {"processor_class": type(self).__name__, "image_size": self.image_size, "patch_size": self.patch_size,
                  "pre_image_tokens": self.pre_image_tokens, "post_image_tokens": self.post_image_tokens,
                  "auto_map": {"AutoProcessor": "processing_casa_zoo.CasaZooProcessor"}}
        (directory / PROCESSOR_FILE).write_text(json.dumps(config, indent=2) + "\n")

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def tokenize_messages(self, messages: list[dict[str, Any]], suppress_bos_token: bool = False) -> BatchFeature:
        ids: list[int] = []
        points: list[int] = []
        pixels: list[torch.Tensor] = []
        for index, message in enumerate(messages):
            last = index == len(messages) - 1
            assistant = message["role"] == "assistant"
            ids += list(self.asst_start_tokens) if assistant else self._encode(f"<|im_start|>{message['role']}\n")
            content = message["content"]
            for item in [{"type": "text", "text": content}] if isinstance(content, str) else content:
                if item["type"] == "image":
                    ids += self.pre_image_tokens
                    points.append(len(ids))
                    ids += self.post_image_tokens
                    if item.get("image") is not None:
                        pixels.append(self.image_processor.process_images(item["image"])[0])
                else:
                    ids += self._encode(item["text"])
            if not (last and assistant):
                ids += list(self.asst_end_tokens) if assistant else self._encode("<|im_end|>\n")
        if messages and messages[-1]["role"] != "assistant":
            ids += list(self.asst_start_tokens)
        # the zoo tokenizer has no beginning-of-sequence token, so `suppress_bos_token` changes nothing
        data: dict[str, Any] = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids),
                                                                                               dtype=torch.long),
                                "image_embeds_insertion_points": [torch.tensor(points, dtype=torch.long)]}
        if pixels:
            data["pixel_values"] = pixels
        return BatchFeature(data)


def _open(image: Any) -> Any:
    if isinstance(image, (str, Path)):
        with Image.open(image) as opened:
            return opened.convert("RGB")
    return image
