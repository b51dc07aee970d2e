"""Kyutai's CASA checkpoints (`kyutai/CASA-*`, `kyutai/Helium1-VL-2B`) behind casa-eval's streaming protocol.

They ship their own modeling code (loaded with `trust_remote_code`), and this adapter makes the calls Kyutai's
scripts make (kyutai-labs/casa @ 2e03327: `scripts/live_captioner_ui.py` — "ui" below — for the manual
streaming loop, `scripts/eval.py` for one question about an image), call for call:

* a user turn is tokenized by the checkpoint's own processor (`tokenize_messages`, with Kyutai's system
  prompt "You are a helpful assistant." for the Qwen-based models, eval.py; no BOS token after the first
  turn, `suppress_bos_token`, speed_bench_streaming.py);
* a frame's prefill is `start_ca_streaming_states()` then `model.forward(input_ids, pixel_values,
  past_key_values, use_cache=True, attention_mask over past + new tokens, position_ids,
  image_embeds_insertion_points, pre_image_tokens, post_image_tokens)` on a persistent `DynamicCache` (ui
  CaptionEngine.stream: start at ui:256, the forward at ui:257-268); `pixel_values` is a list of one
  (h_patches, w_patches, 588) tensor per image in the model's dtype, the processor's output squeezed (eval.py
  `process_images(...).squeeze(0)`, ui:178-179);
* each decoded token is `model.forward(token, attention_mask over the new token, position_ids,
  __is_first_gen_call__=False)` (ui `_decode`, ui:187-198);
* decoding stops on the checkpoint's `generation_config.eos_token_id` (an int or a list, ui:175 and
  live_captioner.py:370-378); the turn is closed by forwarding one stop token — the one generated, else the
  first of that list — then `reset_ca_streaming_states()` drops the window (ui:304-305). Here that stop token
  is the first thing fed when the next turn starts, still before the reset.

Position ids are `(1, L)` for Helium and `(3, 1, L)` for Qwen (M-RoPE with three equal rows), counted from the
cached tokens (ui:181-185). The cross-attention streaming state is measured when the model exposes
`streaming_state_tensors()` (casa-eval's own exports do; the released remote code does not, in which case
side-state bytes are reported as 0 and the model record says so). Batch size 1.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from casa_eval.fusion.backbone import TORCH_DTYPES as DTYPES
from casa_eval.fusion.session import new_dynamic_cache
from casa_eval.models.conversation import PromptFormat
from casa_eval.streaming.kv import analytic_kv_bytes, cache_bytes, cache_tokens, tensor_bytes
from casa_eval.streaming.protocol import CacheStats

SYSTEM_PROMPT = "You are a helpful assistant."


def load_kyutai_model(source: str, *, device: torch.device, dtype: str | None = None, image_size: int = 896,
                      revision: str | None = None) -> KyutaiModel:
    """Load a Kyutai CASA checkpoint (hub id or local directory) and its processor; frames at `image_size`
    (Kyutai's evaluation uses 896) unless the checkpoint's processor says otherwise for a local export."""
    from transformers import AutoConfig, AutoModel, AutoProcessor

    torch_dtype = DTYPES.get(dtype or ("bfloat16" if device.type == "cuda" else "float32"), torch.float32)
    config = AutoConfig.from_pretrained(source, trust_remote_code=True, revision=revision)
    config.torch_dtype = torch_dtype
    if getattr(config, "vision_config", None) is not None:  # Kyutai: the vision tower otherwise builds in fp32
        config.vision_config.torch_dtype = torch_dtype
    attention = "flash_attention_2" if device.type == "cuda" and _flash_available() else "sdpa"
    model = AutoModel.from_pretrained(source, config=config, trust_remote_code=True, torch_dtype=torch_dtype,
                                      attn_implementation=attention, revision=revision)
    model.to(device).eval()
    processor_kwargs = {} if getattr(config, "fusion", None) else {"image_size": image_size}
    processor = AutoProcessor.from_pretrained(source, trust_remote_code=True, revision=revision, **processor_kwargs)
    return KyutaiModel(model, processor, source=source, dtype=str(torch_dtype).removeprefix("torch."),
                       attention=attention)


def _flash_available() -> bool:
    from casa_eval.fusion.window_attention import flash_available

    return flash_available()


class KyutaiModel:
    """A Kyutai remote-code model and its processor, as a casa-eval `StreamingModel`."""

    def __init__(self, model: Any, processor: Any, *, source: str, dtype: str, attention: str) -> None:
        self.hf = model
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.source = source
        self.name = source.rstrip("/").split("/")[-1]
        self.dtype = dtype
        self.is_qwen = "qwen" in source.lower() or "qwen" in str(getattr(model.config, "_name_or_path", "")).lower()
        self.prompt_format = PromptFormat()  # unused for tokenizing: the processor's own template is used
        fusion = getattr(model.config, "fusion", None)
        self.mechanism = fusion["mechanism"] if fusion else ("insertion" if "CASA" not in source else "casa")
        self.text_config = _text_config(model.config)
        self._image_tokens = self._probe_image_tokens()
        self.side_state_measured = hasattr(model, "streaming_state_tensors")

    # -- the streaming-model protocol ------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.hf.parameters()).device

    @property
    def image_tokens_per_image(self) -> int:
        return self._image_tokens

    @property
    def frame_size(self) -> int:
        return int(getattr(self.processor, "image_size", 896))

    @property
    def max_batch_size(self) -> int | None:
        return 1

    @property
    def kv_bytes_per_token(self) -> int:
        cfg = self.text_config
        layers = int(cfg["num_hidden_layers"])
        heads = int(cfg.get("num_key_value_heads") or cfg["num_attention_heads"])
        head_dim = int(cfg.get("head_dim") or cfg["hidden_size"] // int(cfg["num_attention_heads"]))
        return 2 * layers * heads * head_dim * torch.empty(0, dtype=DTYPES[self.dtype]).element_size()

    @property
    def cache_tokens_per_image(self) -> int:
        return self._image_tokens if self.mechanism in ("insertion", "qformer") else 0

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.hf.parameters())

    @property
    def config(self) -> dict[str, Any]:
        return {"source": self.source, "mechanism": self.mechanism, "text": self.text_config,
                "frame_size": self.frame_size, "image_tokens": self._image_tokens,
                "side_state_measured": self.side_state_measured}

    @property
    def stop_token_ids(self) -> list[int]:
        """The checkpoint's stop tokens: `generation_config.eos_token_id`, an int or a list (ui:175)."""
        eos = getattr(getattr(self.hf, "generation_config", None), "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        return [int(eos)] if isinstance(eos, int) else [int(e) for e in eos]

    def turn_close_tokens(self, last_token: int) -> list[int]:
        """Kyutai's loop forwards every generated token but a stop token as it decodes, then one stop token —
        the generated one, else the first of the checkpoint's (ui:279-304). casa-eval's decoding leaves the
        last token unfed, so it comes first here unless it is the stop token itself."""
        stops = self.stop_token_ids
        return [last_token] if last_token in stops else [last_token, stops[0]]

    def prepare_images(self, images: Sequence[Any]) -> list[torch.Tensor]:
        """Pictures -> the pixel tensors `generate_from_image` takes, (h, w, 588) each, on the model's device in
        its dtype (eval.py: `process_images(img, img_size=896).squeeze(0)`, then `.to(bfloat16)`)."""
        dtype = next(self.hf.parameters()).dtype
        return [_pixels(self.processor, image, self.frame_size).to(self.device, dtype) for image in images]

    def new_session(self, batch_size: int = 1) -> KyutaiSession:
        if batch_size != 1:
            raise ValueError("Kyutai's remote code streams one conversation at a time (batch size 1)")
        return KyutaiSession(self)

    # -- helpers ---------------------------------------------------------------------------------------

    def _probe_image_tokens(self) -> int:
        """Visual tokens of one frame: the zoo export says it; for Kyutai's processors the pixel tensor is
        (h_patches, w_patches, 588) patches of 14 px merged 2 x 2."""
        fusion = getattr(self.hf.config, "fusion", None)
        if fusion:
            from casa_eval.fusion import FusionConfig

            return FusionConfig.model_validate(fusion).num_image_tokens
        import numpy as np

        frame = np.zeros((self.frame_size, self.frame_size, 3), dtype=np.uint8)
        pixels = self.processor.image_processor.process_images(frame, img_size=self.frame_size)
        shape = tuple(pixels.shape)
        return int(shape[-3] * shape[-2]) // 4 if len(shape) >= 3 else int(shape[0])


def _text_config(config: Any) -> dict[str, Any]:
    fusion = getattr(config, "fusion", None)
    if fusion:
        b = fusion["backbone"]
        return {"num_hidden_layers": b["num_layers"], "num_key_value_heads": b["num_kv_heads"],
                "num_attention_heads": b["num_heads"], "hidden_size": b["hidden_size"],
                "head_dim": b.get("extra", {}).get("head_dim", b["hidden_size"] // b["num_heads"])}
    text = getattr(config, "text_config", None) or getattr(config, "llm_config", None) or config
    return {k: v for k, v in text.to_dict().items() if isinstance(v, (int, float, str, bool))}


class KyutaiSession:
    """One conversation with a Kyutai model (implements `casa_eval.streaming.StreamingSession`)."""

    def __init__(self, model: KyutaiModel) -> None:
        self.model = model
        self.batch_size = 1
        self.reset()

    def reset(self) -> None:
        hf = self.model.hf
        if hasattr(hf, "reset_ca_streaming_states"):
            hf.reset_ca_streaming_states()
        self.cache = new_dynamic_cache()  # a plain DynamicCache, as Kyutai's streaming scripts create
        self.text_tokens = 0
        self.images = 0
        self.window_image_tokens = self.window_text_tokens = 0
        self.started = False

    def _new_window(self, images: int) -> None:
        """A frame arrives: the previous window's cross-attention state is dropped (ui:305, after the previous
        turn's stop token) and the new one opened before the prefill (ui:256)."""
        hf = self.model.hf
        if hasattr(hf, "reset_ca_streaming_states"):
            hf.reset_ca_streaming_states()
        if hasattr(hf, "start_ca_streaming_states"):
            hf.start_ca_streaming_states()
        self.window_image_tokens, self.window_text_tokens = images * self.model.image_tokens_per_image, 0

    def _positions(self, length: int) -> torch.Tensor:
        start = cache_tokens(self.cache)
        pos = torch.arange(start, start + length, dtype=torch.long, device=self.model.device)
        return pos.view(1, 1, length).expand(3, 1, length).contiguous() if self.model.is_qwen else pos.unsqueeze(0)

    def _forward(self, input_ids: torch.Tensor, *, prefill: bool = False, **extra: Any) -> torch.Tensor:
        """One forward on the conversation's cache. A prefill's mask covers past + new tokens (ui:263); a
        decode step's the new token (ui:195)."""
        input_ids = input_ids.to(self.model.device)
        length = input_ids.shape[1]
        covered = cache_tokens(self.cache) + length if prefill else length
        out = self.model.hf.forward(
            input_ids, past_key_values=self.cache, use_cache=True,
            attention_mask=torch.ones((1, covered), dtype=torch.long, device=self.model.device),
            position_ids=self._positions(length), **extra)
        return out.logits

    def _image_inputs(self, images: Sequence[Any], points: list[int]) -> dict[str, Any]:
        hf, processor = self.model.hf, self.model.processor
        dtype = next(hf.parameters()).dtype
        return {"pixel_values": [_pixels(processor, image, self.model.frame_size).to(self.model.device, dtype)
                                 for image in images],
                "image_embeds_insertion_points": [torch.tensor(points, device=self.model.device)],
                "pre_image_tokens": list(getattr(hf.config, "pre_image_tokens", processor.pre_image_tokens)),
                "post_image_tokens": list(getattr(hf.config, "post_image_tokens", processor.post_image_tokens))}

    @torch.inference_mode()
    def prefill_turn(self, images: Sequence[Sequence[Any]], texts: Sequence[str],
                     previous_tokens: Sequence[Sequence[int]] | None = None) -> tuple[torch.Tensor, list[int]]:
        """One user turn — the images, then the text — through the checkpoint's own chat template. The tokens
        that close the previous turn (`previous_tokens`, ending with its stop token) are forwarded first, in
        the previous window, as Kyutai's loop does before it resets (ui:304-305)."""
        processor = self.model.processor
        carry = list(previous_tokens[0]) if previous_tokens else []
        if carry:
            self._forward(torch.tensor([carry], dtype=torch.long), __is_first_gen_call__=False)
            self.text_tokens += len(carry)
            self.window_text_tokens += len(carry)
        content: list[dict[str, Any]] = [{"type": "image", "image": None} for _ in images[0]]
        content.append({"type": "text", "text": texts[0]})
        messages = ([{"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]}]
                    if self.model.is_qwen and not self.started else [])
        messages.append({"role": "user", "content": content})
        inputs = processor.tokenize_messages(messages, suppress_bos_token=self.started)
        input_ids = inputs["input_ids"]
        points = _insertion_points(inputs.get("image_embeds_insertion_points"))
        extra: dict[str, Any] = {}
        if images[0]:
            self._new_window(len(images[0]))
            extra = self._image_inputs(images[0], points)
        logits = self._forward(input_ids, prefill=bool(images[0]), **extra)
        self.text_tokens += input_ids.shape[1]
        # the window's text: what follows the (last) image in this turn
        self.window_text_tokens += input_ids.shape[1] - (points[-1] if images[0] and points else 0)
        self.images += len(images[0])
        self.started = True
        return logits[:, -1], [len(carry) + input_ids.shape[1]]

    @torch.inference_mode()
    def continue_with_frame(self, pixels: Sequence[torch.Tensor], prompt: str | None) -> tuple[torch.Tensor, int]:
        """speed_bench_streaming.py's turn: one long assistant turn that every frame continues. Turn 0 (`prompt`
        given) is the user prompt, then the assistant turn opening with the frame, never closed (asst_end_tokens
        emptied); later turns are the frame alone (asst_start_tokens emptied too, no BOS). `pixels` come from
        `KyutaiModel.prepare_images`, prepared before the clock as the script does."""
        processor = self.model.processor
        if not (hasattr(processor, "asst_start_tokens") and hasattr(processor, "asst_end_tokens")):
            raise ValueError("this checkpoint's processor has no asst_start_tokens / asst_end_tokens: the Kyutai loop "
                             "continues one assistant turn through them, as speed_bench_streaming.py does")
        messages: list[dict[str, Any]] = []
        if prompt is not None:
            if self.model.is_qwen:
                messages.append({"role": "system", "content": [{"type": "text", "text": SYSTEM_PROMPT}]})
            messages.append({"role": "user", "content": [{"type": "text", "text": prompt}]})
        messages.append({"role": "assistant", "content": [{"type": "image", "image": None}]})
        saved = processor.asst_start_tokens, processor.asst_end_tokens
        try:
            processor.asst_end_tokens = []
            if prompt is None:
                processor.asst_start_tokens = []
            inputs = processor.tokenize_messages(messages, suppress_bos_token=self.started)
        finally:
            processor.asst_start_tokens, processor.asst_end_tokens = saved
        input_ids = inputs["input_ids"]
        points = _insertion_points(inputs.get("image_embeds_insertion_points"))
        self._new_window(1)
        extra = {**self._image_inputs([], points), "pixel_values": list(pixels)}
        logits = self._forward(input_ids, prefill=True, **extra)
        self.text_tokens += input_ids.shape[1]
        self.window_text_tokens += input_ids.shape[1] - (points[-1] if points else 0)
        self.images += 1
        self.started = True
        return logits[:, -1], int(input_ids.shape[1])

    @torch.inference_mode()
    def add_image(self, images: Sequence[Any] | torch.Tensor) -> None:
        """An image on its own: the pre/post image markers with the image between them."""
        processor = self.model.processor
        pre, post = list(processor.pre_image_tokens), list(processor.post_image_tokens)
        self._new_window(1)
        self._forward(torch.tensor([pre + post], dtype=torch.long), prefill=True,
                      **self._image_inputs([images[0]], [len(pre)]))
        self.text_tokens += len(pre) + len(post)
        self.window_text_tokens += len(post)
        self.images += 1
        self.started = True

    @torch.inference_mode()
    def add_text(self, ids: torch.Tensor, mask: torch.Tensor | None = None, *,
                 all_logits: bool = False) -> torch.Tensor:
        if mask is not None and not bool(mask.all()):
            raise ValueError("Kyutai sessions take unpadded text (batch size 1)")
        logits = self._forward(ids.view(1, -1), __is_first_gen_call__=False)
        self.text_tokens += ids.numel()
        self.window_text_tokens += ids.numel()
        self.started = True
        return logits if all_logits else logits[:, -1]

    def decode(self, token_ids: torch.Tensor) -> torch.Tensor:
        return self.add_text(token_ids.view(1, 1))

    def cache_stats(self) -> CacheStats:
        """KV measured from the cache next to tokens fed x bytes per token. The side state is measured and
        predicted only for checkpoints that describe it (casa-eval's exports); otherwise both are 0."""
        model = self.model
        expected = self.text_tokens + self.images * model.cache_tokens_per_image
        side = model.hf.streaming_state_tensors() if model.side_state_measured else []
        return CacheStats(
            kv_tokens=cache_tokens(self.cache), kv_bytes=cache_bytes(self.cache), analytic_kv_tokens=expected,
            analytic_kv_bytes=expected * model.kv_bytes_per_token,
            side_state_tokens=model.hf.streaming_state_tokens() if model.side_state_measured else 0,
            side_state_bytes=tensor_bytes(side),
            analytic_side_state_bytes=self._expected_side_bytes())

    def _expected_side_bytes(self) -> int:
        zoo = getattr(self.model.hf, "zoo", None)  # an exported zoo model knows its mechanism's side state
        if zoo is None or not self.model.side_state_measured:
            return 0
        spec = zoo.config.backbone
        tokens = zoo.mechanism.side_tokens(self.window_image_tokens, self.window_text_tokens)
        return analytic_kv_bytes(layers=len(zoo.fusion_indices), kv_heads=spec.num_kv_heads, head_dim=spec.head_dim,
                                 tokens=tokens, batch=1, dtype_bytes=torch.empty(0, dtype=zoo.dtype).element_size())


def _insertion_points(value: Any) -> list[int]:
    if value is None:
        return []
    first = value[0] if isinstance(value, (list, tuple)) else value
    return [int(v) for v in torch.as_tensor(first).flatten().tolist()]


def _pixels(processor: Any, image: Any, size: int) -> torch.Tensor:
    """One image as Kyutai's scripts pass it: the processor's (1, h_patches, w_patches, 588) squeezed to
    (h_patches, w_patches, 588) (eval.py `process_images(img, img_size=896).squeeze(0)`)."""
    if isinstance(image, torch.Tensor):
        pixels = image
    else:
        pixels = processor.image_processor.process_images(image, img_size=size)
    return pixels.squeeze(0) if pixels.dim() == 4 else pixels
