"""The Kyutai path, offline: a zoo model exported with Kyutai's remote-code interface is loaded from its
directory with `trust_remote_code`, driven the way Kyutai's scripts drive `kyutai/CASA-*`, and casa-eval's
Kyutai adapter reproduces `generate_from_image` token for token while its memory matches the analytic one.
The export is strict where Kyutai's calls can be got wrong (no image for decoding without
start_ca_streaming_states, pixel tensors with a batch dimension, a prefill mask over the new tokens only, its
own stop tokens): the adapter streams exactly as Kyutai's manual loop does, and each deviation fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lmms_eval.api.instance import Instance
from PIL import Image, ImageDraw

from casa_eval.errors import UserError
from casa_eval.export.kyutai import export_zoo_mechanism
from casa_eval.models import kyutai
from casa_eval.models.adapter import CasaEvalLMM
from casa_eval.models.kyutai import KyutaiModel, KyutaiSession
from casa_eval.models.loading import load_model


def _image(text: str) -> Image.Image:
    image = Image.new("RGB", (96, 96), "white")
    ImageDraw.Draw(image).text((8, 40), text, fill="black")
    return image


@pytest.fixture(scope="module", params=["casa", "insertion"])
def export(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    mechanism = request.param
    return mechanism, export_zoo_mechanism(mechanism, tmp_path_factory.mktemp(f"kyutai-{mechanism}"), seed=3)


def _kyutai_generate(directory: Path, image: Image.Image, question: str, max_new_tokens: int) -> str:
    """What Kyutai's eval script does: processor.tokenize_messages, then model.generate_from_image."""
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(directory, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(directory, trust_remote_code=True)
    messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                             {"type": "text", "text": question}]}]
    inputs = processor.tokenize_messages(messages=messages)
    length = inputs["input_ids"].shape[1]
    out = model.generate_from_image(**inputs, max_new_tokens=max_new_tokens,
                                    pre_image_tokens=processor.pre_image_tokens,
                                    post_image_tokens=processor.post_image_tokens,
                                    eos_token_id=model.generation_config.eos_token_id,
                                    pad_token_id=model.generation_config.pad_token_id)[0, length:]
    return str(processor.tokenizer.decode(out, skip_special_tokens=True))


def test_the_export_exposes_kyutais_interface(export: tuple[str, Path]) -> None:
    from transformers import AutoModel, AutoProcessor

    _, directory = export
    model = AutoModel.from_pretrained(directory, trust_remote_code=True)
    processor = AutoProcessor.from_pretrained(directory, trust_remote_code=True)
    for method in ("generate_from_image", "start_ca_streaming_states", "reset_ca_streaming_states"):
        assert callable(getattr(model, method))
    assert callable(processor.tokenize_messages) and processor.pre_image_tokens and processor.post_image_tokens
    inputs = processor.tokenize_messages([{"role": "user", "content": [{"type": "image", "image": _image("x")},
                                                                      {"type": "text", "text": "Read it."}]}])
    (point,) = inputs["image_embeds_insertion_points"][0].tolist()
    assert inputs["input_ids"][0, point - 1].item() == processor.pre_image_tokens[-1]
    assert inputs["input_ids"][0, point].item() == processor.post_image_tokens[0]


def test_remote_code_needs_the_explicit_flag(export: tuple[str, Path]) -> None:
    _, directory = export
    with pytest.raises(UserError, match=f"{directory} runs modeling code shipped with the checkpoint; pass "
                                        "--trust-remote-code"):
        load_model("casa", checkpoint=directory, device="cpu")


def _request(question: str, image: Image.Image, max_new_tokens: int) -> Instance:
    kwargs = {"max_new_tokens": max_new_tokens, "temperature": 0, "do_sample": False, "until": []}
    return Instance("generate_until", (question, kwargs, lambda doc: [doc["image"]], 0, "toy", "test"), idx=0,
                    metadata={"task": "toy", "doc_id": 0, "repeats": 1})


def test_the_adapter_reproduces_generate_from_image(export: tuple[str, Path]) -> None:
    mechanism, directory = export
    name = "casa" if mechanism == "casa" else "insertion"
    image, question = _image("INV-42"), "What is the invoice number?"
    expected = _kyutai_generate(directory, image, question, max_new_tokens=12)

    loaded = load_model(name, checkpoint=directory, device="cpu", trust_remote_code=True)
    assert isinstance(loaded.model, KyutaiModel) and loaded.record["mechanism"] == mechanism
    lm = CasaEvalLMM(loaded=loaded, batch_size=1)
    lm.task_dict = {"toy": {"test": [{"image": image}]}}
    (response,) = lm.generate_until([_request(question, image, 12)])
    assert response.text == expected
    assert response.token_counts is not None and response.token_counts.output_tokens == 12


def test_streaming_memory_matches_the_analytic_count(export: tuple[str, Path]) -> None:
    mechanism, directory = export
    loaded = load_model("casa" if mechanism == "casa" else "insertion", checkpoint=directory, device="cpu",
                        trust_remote_code=True)
    model: Any = loaded.model
    session = model.new_session()
    eos = torch.tensor([model.tokenizer.eos_token_id])
    for turn in range(3):
        logits, _ = session.prefill_turn([[_image(f"frame {turn}")]], [f"Describe frame {turn}."],
                                         previous_tokens=[[int(eos)]] if turn else None)
        token = logits.argmax(-1)
        for _ in range(4):
            logits = session.decode(token)
            token = logits.argmax(-1)
        stats = session.cache_stats()
        assert stats.kv_tokens == stats.analytic_kv_tokens and stats.kv_bytes == stats.analytic_kv_bytes
        assert stats.side_state_bytes == stats.analytic_side_state_bytes
        if mechanism == "casa":  # the window holds the latest frame and the text after it
            assert stats.side_state_bytes > 0
            image_tokens = model.image_tokens_per_image
            assert stats.kv_tokens < (turn + 1) * image_tokens  # images never enter the KV cache
        else:
            assert stats.side_state_bytes == 0 and stats.kv_tokens > (turn + 1) * model.image_tokens_per_image


# --- Kyutai's call sequence, and a strict export that fails when it is not followed -----------------------------

def _frames(n: int) -> list[Image.Image]:
    return [_image(f"frame {i}") for i in range(n)]


def _kyutai_loop(directory: Path, frames: list[Image.Image], prompt: str, tokens: int) -> list[list[torch.Tensor]]:
    """Kyutai's manual streaming loop (live_captioner_ui.py CaptionEngine.stream) on the export, with the question
    turns of eval.py: per frame start_ca_streaming_states, a prefill whose mask covers past + new tokens, decode
    steps that forward each token at once, the stop token forwarded, reset_ca_streaming_states. Returns the
    logits after the prefill and after each decoded token, per frame."""
    from transformers import AutoModel, AutoProcessor, DynamicCache

    model = AutoModel.from_pretrained(directory, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(directory, trust_remote_code=True)
    eos = model.generation_config.eos_token_id
    stops = [eos] if isinstance(eos, int) else list(eos)
    cache = DynamicCache()
    model.reset_ca_streaming_states()

    def forward(ids: torch.Tensor, mask_length: int, **extra: Any) -> torch.Tensor:
        past = cache.get_seq_length()
        return model.forward(ids, past_key_values=cache, use_cache=True, attention_mask=torch.ones(1, mask_length),
                             position_ids=torch.arange(past, past + ids.shape[1])[None], **extra).logits[:, -1]

    out = []
    with torch.inference_mode():
        for turn, frame in enumerate(frames):
            messages = [{"role": "user", "content": [{"type": "image", "image": None},
                                                     {"type": "text", "text": prompt}]}]
            inputs = processor.tokenize_messages(messages, suppress_bos_token=turn > 0)
            ids = inputs["input_ids"]
            pixels = processor.image_processor.process_images(frame, img_size=processor.image_size).squeeze(0)
            model.start_ca_streaming_states()
            logits = forward(ids, cache.get_seq_length() + ids.shape[1], pixel_values=[pixels.to(model.dtype)],
                             image_embeds_insertion_points=inputs["image_embeds_insertion_points"],
                             pre_image_tokens=list(model.config.pre_image_tokens),
                             post_image_tokens=list(model.config.post_image_tokens))
            steps, stop = [logits], stops[0]
            for _ in range(tokens):
                token = int(logits.argmax(-1))
                if token in stops:
                    stop = token
                    break
                logits = forward(torch.tensor([[token]]), 1, __is_first_gen_call__=False)
                steps.append(logits)
            forward(torch.tensor([[stop]]), 1, __is_first_gen_call__=False)
            model.reset_ca_streaming_states()
            out.append(steps[:tokens])
    return out


def _adapter_loop(directory: Path, frames: list[Image.Image], prompt: str, tokens: int) -> list[list[torch.Tensor]]:
    """The same conversation through casa-eval's Kyutai adapter (what `run` and `profile` drive)."""
    loaded = load_model("casa", checkpoint=directory, device="cpu", trust_remote_code=True)
    model: Any = loaded.model
    session = model.new_session()
    out, carry = [], None
    for frame in frames:
        logits, _ = session.prefill_turn([[frame]], [prompt], previous_tokens=[carry] if carry else None)
        steps = [logits]
        for _ in range(tokens - 1):
            token = logits.argmax(-1)
            if int(token) in model.stop_token_ids:
                break
            logits = session.decode(token)
            steps.append(logits)
        carry = model.turn_close_tokens(int(steps[-1].argmax(-1)))
        out.append(steps)
    return out


@pytest.fixture(scope="module")
def casa_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_zoo_mechanism("casa", tmp_path_factory.mktemp("kyutai-strict"), seed=5)


def _same(ours: list[list[torch.Tensor]], theirs: list[list[torch.Tensor]]) -> bool:
    return [len(s) for s in ours] == [len(s) for s in theirs] and all(
        torch.allclose(a, b, atol=1e-4, rtol=1e-4) for x, y in zip(ours, theirs, strict=True)
        for a, b in zip(x, y, strict=True))


def test_the_adapter_streams_as_kyutais_loop_does(casa_export: Path) -> None:
    frames, prompt = _frames(3), "Describe the frame."
    assert _same(_adapter_loop(casa_export, frames, prompt, 4), _kyutai_loop(casa_export, frames, prompt, 4))


def _no_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(KyutaiSession, "_new_window", _new_window_without_start)


def _new_window_without_start(self: Any, images: int) -> None:
    self.model.hf.reset_ca_streaming_states()
    self.window_image_tokens, self.window_text_tokens = images * self.model.image_tokens_per_image, 0


def _batched_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    original = kyutai._pixels
    monkeypatch.setattr(kyutai, "_pixels", lambda *args: original(*args)[None])


def _new_tokens_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    original = KyutaiSession._forward
    monkeypatch.setattr(KyutaiSession, "_forward",
                        lambda self, ids, prefill=False, **extra: original(self, ids, **extra))


@pytest.mark.parametrize(("deviation", "failure"), [
    (_no_start, "differs"),  # decoded tokens then run without the image
    (_batched_pixels, "each pixel_values item must be"),
    (_new_tokens_mask, "attention_mask covers"),
])
def test_the_strict_export_catches_each_deviation_from_kyutais_calls(
        casa_export: Path, monkeypatch: pytest.MonkeyPatch, deviation: Any, failure: str) -> None:
    frames, prompt = _frames(2), "Describe the frame."
    reference = _kyutai_loop(casa_export, frames, prompt, 4)
    deviation(monkeypatch)
    if failure == "differs":
        assert not _same(_adapter_loop(casa_export, frames, prompt, 4), reference)
    else:
        with pytest.raises(ValueError, match=failure):
            _adapter_loop(casa_export, frames, prompt, 4)


def test_decoding_stops_on_the_checkpoints_own_stop_tokens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A checkpoint whose generation config stops on a token casa-eval would not pick by itself: the adapter
    stops where `generate_from_image` stops."""
    import json

    directory = export_zoo_mechanism("casa", tmp_path / "export", seed=5)
    image, question = _image("INV-42"), "What is the invoice number?"
    config = json.loads((directory / "config.json").read_text())
    config["eos_token_id"] = []
    (directory / "config.json").write_text(json.dumps(config))
    free = _kyutai_generate_ids(directory, image, question, 8)  # nothing stops it
    stop = free[-1]  # a token the model generates, which no default stop list holds
    config["eos_token_id"] = [stop]
    (directory / "config.json").write_text(json.dumps(config))
    expected = _kyutai_generate_ids(directory, image, question, 8)
    assert expected == free[:free.index(stop) + 1]  # generate_from_image stops on it

    def answer() -> str:
        loaded = load_model("casa", checkpoint=directory, device="cpu", trust_remote_code=True)
        lm = CasaEvalLMM(loaded=loaded, batch_size=1)
        lm.task_dict = {"toy": {"test": [{"image": image}]}}
        (response,) = lm.generate_until([_request(question, image, 8)])
        return str(response.text)

    tokenizer = load_model("casa", checkpoint=directory, device="cpu", trust_remote_code=True).model.tokenizer
    assert stop not in {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")}
    assert answer() == tokenizer.decode(expected[:-1], skip_special_tokens=True)
    monkeypatch.setattr(KyutaiModel, "stop_token_ids", property(lambda self: [self.tokenizer.eos_token_id]))
    assert answer() != tokenizer.decode(expected[:-1], skip_special_tokens=True)  # casa-eval's own EOS


def _kyutai_generate_ids(directory: Path, image: Image.Image, question: str, max_new_tokens: int) -> list[int]:
    from transformers import AutoModel, AutoProcessor

    model = AutoModel.from_pretrained(directory, trust_remote_code=True).eval()
    processor = AutoProcessor.from_pretrained(directory, trust_remote_code=True)
    inputs = processor.tokenize_messages(messages=[{"role": "user", "content": [
        {"type": "image", "image": image}, {"type": "text", "text": question}]}])
    length = inputs["input_ids"].shape[1]
    out = model.generate_from_image(**inputs, max_new_tokens=max_new_tokens)  # eval.py: the checkpoint's EOS
    return [int(t) for t in out[0, length:]]
