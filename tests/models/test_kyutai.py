"""The Kyutai path, offline: a zoo model exported with Kyutai's remote-code interface is loaded from its
directory with `trust_remote_code`, driven the way Kyutai's scripts drive `kyutai/CASA-*`, and casa-eval's
Kyutai adapter reproduces `generate_from_image` token for token while its memory matches the analytic one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lmms_eval.api.instance import Instance
from PIL import Image, ImageDraw

from casa_eval.errors import UserError
from casa_eval.export.kyutai import export_zoo_mechanism
from casa_eval.models.adapter import CasaEvalLMM
from casa_eval.models.kyutai import KyutaiModel
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
