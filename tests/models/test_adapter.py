"""The lmms-eval adapter on real `Instance` requests: batching, generation settings, token counts,
lifecycle, log-likelihood, multi-round streaming and the resume journal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lmms_eval.api.instance import Instance
from PIL import Image, ImageDraw

from casa_eval.models.adapter import CasaEvalLMM, ZooCasaLMM, generation_config
from casa_eval.models.journal import PredictionJournal
from casa_eval.models.loading import load_model

TASK, SPLIT = "toy", "test"


def _image(i: int) -> Image.Image:
    image = Image.new("RGB", (96, 96), "white")
    ImageDraw.Draw(image).text((10, 40), f"doc {i}", fill="black")
    return image


DOCS = [{"question": f"What is written{'?' * (i % 4 + 1)}", "image": _image(i)} for i in range(6)]


def _to_visual(doc: dict[str, Any]) -> list[Image.Image]:
    return [doc["image"]]


def _requests(gen_kwargs: dict[str, Any] | None = None) -> list[Instance]:
    kwargs = gen_kwargs or {"max_new_tokens": 6, "temperature": 0, "do_sample": False, "until": ["\n\n"]}
    return [Instance("generate_until", (d["question"], dict(kwargs), _to_visual, i, TASK, SPLIT), idx=0,
                     metadata={"task": TASK, "doc_id": i, "repeats": 1}) for i, d in enumerate(DOCS)]


def _adapter(mechanism: str = "casa", batch_size: int = 4, journal: PredictionJournal | None = None) -> CasaEvalLMM:
    lm = CasaEvalLMM(loaded=load_model(f"zoo-{mechanism}", device="cpu"), batch_size=batch_size, journal=journal)
    lm.task_dict = {TASK: {SPLIT: DOCS}}
    return lm


@pytest.mark.parametrize("mechanism", ["casa", "insertion", "gated-cross-attention"])
def test_batched_generation_equals_one_request_at_a_time(mechanism: str) -> None:
    batched = _adapter(mechanism, batch_size=4).generate_until(_requests())
    single = _adapter(mechanism, batch_size=1).generate_until(_requests())
    assert [r.text for r in batched] == [r.text for r in single]
    for r in batched:
        assert r.token_counts is not None and r.token_counts.output_tokens == 6  # greedy, 6 new tokens
        assert r.token_counts.input_tokens is not None and r.token_counts.input_tokens > 64  # text + 64 image


def test_generation_settings_are_honoured() -> None:
    lm = _adapter()
    short = lm.generate_until(_requests({"max_new_tokens": 2, "temperature": 0, "do_sample": False}))
    assert all(r.token_counts.output_tokens == 2 for r in short)
    full = lm.generate_until(_requests({"max_new_tokens": 6, "temperature": 0, "do_sample": False}))
    stop = full[0].text[1:3]
    cut = lm.generate_until(_requests({"max_new_tokens": 6, "until": [stop], "do_sample": False}))
    assert cut[0].text == full[0].text[: full[0].text.find(stop)]
    config = generation_config({"temperature": 0.7, "do_sample": True, "top_p": 0.9}, lm.tokenizer)
    assert config.do_sample and config.temperature == 0.7 and config.top_p == 0.9
    assert not generation_config({"temperature": 0, "do_sample": True}, lm.tokenizer).do_sample


def test_adapter_survives_lmms_clean_and_exposes_its_device() -> None:
    lm = _adapter()
    before = [r.text for r in lm.generate_until(_requests())]
    lm.clean()  # lmms-eval's default deletes every nn.Module attribute
    assert [r.text for r in lm.generate_until(_requests())] == before
    assert lm.device == torch.device("cpu")


def test_named_adapter_class_builds_from_a_model_args_string() -> None:
    lm = ZooCasaLMM.create_from_arg_string("seed=3,dtype=float32", {"batch_size": "2", "device": "cpu"})
    assert lm.loaded.entry.name == "zoo-casa" and lm.batch_size == 2
    assert lm.loaded.model.config.seed == 3
    with pytest.raises(ValueError, match="unknown model_args"):
        ZooCasaLMM.create_from_arg_string("sead=3", {})


def test_loglikelihood_prefers_the_greedy_continuation() -> None:
    lm = _adapter()
    greedy = lm.generate_until(_requests({"max_new_tokens": 3, "do_sample": False}))[0].text
    requests = [Instance("loglikelihood", (DOCS[0]["question"], cont, _to_visual, 0, TASK, SPLIT), idx=k,
                         metadata={"task": TASK, "doc_id": 0, "repeats": 1})
                for k, cont in enumerate([greedy, " zebra crossing"])]
    (lp_greedy, is_greedy), (lp_other, other_greedy) = lm.loglikelihood(requests)
    assert is_greedy and not other_greedy
    assert lp_greedy > lp_other


def test_multi_round_keeps_one_streaming_conversation() -> None:
    lm = _adapter()
    seen: list[list[str]] = []

    def doc_to_text(doc: dict[str, Any], previous_output: list[str], round_idx: int,
                    previous_round_info: Any) -> tuple:
        seen.append(list(previous_output))
        terminal = round_idx >= 3
        return [_image(round_idx + 10)], f"And round {round_idx}?", terminal, previous_output, None

    request = Instance("generate_until_multi_round",
                       ("First question?", {"max_new_tokens": 3, "do_sample": False}, _to_visual, doc_to_text, 0,
                        TASK, SPLIT), idx=0, metadata={"task": TASK, "doc_id": 0, "repeats": 1})
    (rounds,) = lm.generate_until_multi_round([request])
    assert len(rounds) == 3 and seen[-1] == rounds


def test_journal_replays_finished_predictions(tmp_path: Path) -> None:
    journal = PredictionJournal(tmp_path / "predictions.jsonl")
    first = [r.text for r in _adapter(journal=journal).generate_until(_requests())]
    assert len(PredictionJournal(tmp_path / "predictions.jsonl")) == len(DOCS)

    replay = _adapter(journal=PredictionJournal(tmp_path / "predictions.jsonl"))
    replay.loaded.model.new_session = None  # type: ignore[assignment]  # any model call would now fail
    assert [r.text for r in replay.generate_until(_requests())] == first

    (tmp_path / "predictions.jsonl").open("a").write('{"key": "torn')  # an interrupted write
    assert len(PredictionJournal(tmp_path / "predictions.jsonl")) == len(DOCS)


def test_no_casa_eval_model_name_shadows_an_lmms_eval_model() -> None:
    """lmms-eval loads plugin manifests with overwrite=True: a name it already has would be silently replaced."""
    from lmms_eval.models import _build_builtin_manifests

    from casa_eval.registry import all_models

    builtin = {m.model_id for m in _build_builtin_manifests()} | {
        alias for m in _build_builtin_manifests() for alias in m.aliases}
    assert "llava" in builtin and not builtin & set(all_models())
