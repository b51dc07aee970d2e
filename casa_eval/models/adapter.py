"""The lmms-eval model class for every casa-eval model (`lmms_eval.api.model.lmms` subclass).

It drives any `StreamingModel` through the streaming protocol, so zoo models and (later) real checkpoints
share it. lmms-eval hands it every request of one type in one call: it groups them by task and generation
settings, sorts by prompt length, batches them (left padding), and returns `GenerationResult`s with token
counts. `clean()` keeps the model (lmms-eval's default deletes every `nn.Module` attribute at the end of
each evaluation, which would break reusing one instance across tasks).

Registered with lmms-eval through the `lmms_eval.models` entry point (see `manifests.py`): one class per
model name, e.g. ``python -m lmms_eval --model zoo-casa --model_args seed=0 --tasks synth_docvqa
--include_path tasks``.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from lmms_eval.api.instance import GenerationResult, Instance, TokenCounts
from lmms_eval.api.model import lmms
from PIL import Image

from casa_eval.models._names import adapter_class_name
from casa_eval.models.conversation import answer_closing_tokens, prefill_turn
from casa_eval.models.journal import PredictionJournal, prediction_key
from casa_eval.models.loading import LoadedModel, load_model
from casa_eval.registry import all_models
from casa_eval.streaming import GenerationConfig, generate

ProgressCallback = Callable[[int], None]
DEFAULT_MAX_NEW_TOKENS = 32


class CasaEvalLMM(lmms):
    is_simple = True
    model_name: ClassVar[str] = ""

    def __init__(self, model: str | None = None, checkpoint: str | None = None, seed: int = 0,
                 dtype: str | None = None, attention_backend: str | None = None, batch_size: int | str = 1,
                 max_batch_size: int | None = None, device: str | None = None, trust_remote_code: bool = False,
                 cross_attention_cache: str = "latest", *, loaded: LoadedModel | None = None,
                 journal: PredictionJournal | None = None, **unknown: Any) -> None:
        super().__init__()
        if unknown:
            raise ValueError(f"unknown model_args {sorted(unknown)}; accepted: model, checkpoint, seed, dtype, "
                             "attention_backend, batch_size, device, trust_remote_code, cross_attention_cache")
        if loaded is None:
            name = model or self.model_name
            loaded = load_model(name, checkpoint=checkpoint, seed=int(seed), dtype=dtype,
                                attention_backend=attention_backend, device=_rank_device(device),
                                trust_remote_code=str(trust_remote_code).lower() in ("true", "1", "yes"),
                                cross_attention_cache=cross_attention_cache)
        self.loaded = loaded
        requested = 8 if str(batch_size) == "auto" else int(batch_size)  # the CLI passes strings
        limit = loaded.model.max_batch_size
        self.batch_size = requested if limit is None else max(1, min(requested, limit))
        self.journal = journal
        self.progress: ProgressCallback | None = None  # called with the number of finished requests

    # -- what lmms-eval reads -------------------------------------------------------------------------

    @property
    def model(self) -> Any:
        return self.loaded.model

    @property
    def tokenizer(self) -> Any:
        return self.loaded.model.tokenizer

    @property
    def device(self) -> torch.device:
        return self.loaded.model.device

    def clean(self) -> None:
        """Free transient memory but keep the model, so one instance serves several evaluations."""
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- generation ---------------------------------------------------------------------------------------

    def generate_until(self, requests: list[Instance]) -> list[GenerationResult]:
        results: list[GenerationResult | None] = [None] * len(requests)
        pending: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        for i, request in enumerate(requests):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            item = {"context": context, "gen_kwargs": dict(gen_kwargs), "doc_to_visual": doc_to_visual,
                    "doc_id": doc_id, "task": task, "split": split,
                    "key": prediction_key(self.loaded.fingerprint, task, doc_id, context, _jsonable(gen_kwargs))}
            cached = self.journal.get(item["key"]) if self.journal is not None else None
            if cached is not None:
                results[i] = _result(cached)
                continue
            group = json.dumps([task, split, _jsonable(gen_kwargs)], sort_keys=True, default=str)
            pending[group].append((i, item))
        done = sum(r is not None for r in results)
        if done and self.progress:
            self.progress(done)
        started = time.perf_counter()
        generated_tokens = 0
        for items in pending.values():
            items.sort(key=lambda pair: -len(pair[1]["context"]))  # longest first: OOMs surface at once
            for start in range(0, len(items), self.batch_size):
                chunk = items[start:start + self.batch_size]
                records = self._generate_batch([item for _, item in chunk])
                for (i, _), record in zip(chunk, records, strict=True):
                    results[i] = _result(record)
                    generated_tokens += record["output_tokens"]
                if self.journal is not None:
                    self.journal.append(records)
                if self.progress:
                    self.progress(len(chunk))
        _log_throughput(generated_tokens, time.perf_counter() - started, len(requests))
        return [r for r in results if r is not None]

    def _generate_batch(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        visuals = [_images(item["doc_to_visual"](self.task_dict[item["task"]][item["split"]][item["doc_id"]]))
                   for item in items]
        by_count: dict[int, list[int]] = defaultdict(list)
        for i, images in enumerate(visuals):
            by_count[len(images)].append(i)
        records: list[dict[str, Any] | None] = [None] * len(items)
        for indices in by_count.values():  # samples of a batch must have the same number of images
            sub = [items[i] for i in indices]
            config = generation_config(sub[0]["gen_kwargs"], self.tokenizer, _stop_ids(self.model))
            started = time.perf_counter()
            session = self.model.new_session(batch_size=len(sub))
            logits, fed = prefill_turn(session, self.tokenizer, self.loaded.prompt_format,
                                       [visuals[i] for i in indices], [it["context"] for it in sub])
            out = generate(session, logits, config, tokenizer=self.tokenizer)
            elapsed = time.perf_counter() - started
            image_tokens = self.model.image_tokens_per_image
            for j, i in enumerate(indices):
                records[i] = {
                    "key": items[i]["key"], "model": self.loaded.entry.name, "task": items[i]["task"],
                    "doc_id": items[i]["doc_id"], "prediction": out.texts[j],
                    "input_tokens": fed[j] + image_tokens * len(visuals[i]),
                    "output_tokens": len(out.token_ids[j]), "batch_seconds": round(elapsed, 4),
                }
        return [r for r in records if r is not None]

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """Log-probability of each continuation after the context (teacher-forced through a session)."""
        out = []
        for request in requests:
            context, continuation, doc_to_visual, doc_id, task, split = request.args
            doc = self.task_dict[task][split][doc_id]
            if callable(continuation):
                continuation = continuation(doc)
            if isinstance(continuation, list):
                continuation = continuation[0]
            images = _images(doc_to_visual(doc)) if doc_to_visual is not None else []
            target = self.tokenizer(str(continuation), add_special_tokens=False).input_ids
            session = self.model.new_session(batch_size=1)
            logits, _ = prefill_turn(session, self.tokenizer, self.loaded.prompt_format, [images], [context])
            steps = [logits]
            if len(target) > 1:
                rest = session.add_text(torch.tensor([target[:-1]]), all_logits=True)
                steps.extend(rest[:, k] for k in range(rest.shape[1]))
            logprobs = torch.log_softmax(torch.stack(steps, 1).float(), -1)[0]
            ids = torch.tensor(target, device=logprobs.device)
            total = float(logprobs[torch.arange(len(target)), ids].sum())
            greedy = bool((logprobs.argmax(-1) == ids).all())
            out.append((total, greedy))
            if self.progress:
                self.progress(1)
        return out

    def generate_until_multi_round(self, requests: list[Instance]) -> list[list[str]]:
        """One streaming session per request: every round appends its images and text to the same
        conversation (nothing is re-encoded), until the task's `doc_to_text` signals the end."""
        outputs = []
        for request in requests:
            context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split = request.args
            doc = self.task_dict[task][split][doc_id]
            config = generation_config(dict(gen_kwargs), self.tokenizer, _stop_ids(self.model))
            session = self.model.new_session(batch_size=1)
            images, info, carry = _images(doc_to_visual(doc)), None, None
            rounds: list[str] = []
            for round_idx in range(64):
                if round_idx:
                    visuals, context, terminal, _, info = doc_to_text(
                        doc, previous_output=list(rounds), round_idx=round_idx, previous_round_info=info)
                    if terminal:
                        break
                    images = _images(visuals)
                logits, _ = prefill_turn(session, self.tokenizer, self.loaded.prompt_format, [images], [context],
                                         previous_tokens=[carry] if carry else None)
                out = generate(session, logits, config, tokenizer=self.tokenizer)
                rounds.append(out.texts[0])
                carry = answer_closing_tokens(self.model, self.tokenizer, self.loaded.prompt_format, out)
            outputs.append(rounds)
            if self.progress:
                self.progress(1)
        return outputs


def _stop_ids(model: Any) -> Sequence[int] | None:
    """The checkpoint's own stop tokens when it declares them (Kyutai's generation config), else None."""
    return getattr(model, "stop_token_ids", None)


def generation_config(gen_kwargs: dict[str, Any], tokenizer: Any,
                      stop_ids: Sequence[int] | None = None) -> GenerationConfig:
    """lmms-eval's generation kwargs -> ours (greedy unless do_sample with a positive temperature). Decoding
    stops on `stop_ids` when the model declares them, else on EOS and `<|im_end|>`."""
    until = gen_kwargs.get("until") or ()
    until = (until,) if isinstance(until, str) else tuple(until)
    temperature = float(gen_kwargs.get("temperature", 0) or 0)
    do_sample = bool(gen_kwargs.get("do_sample", False)) and temperature > 0
    eos = (set(stop_ids) if stop_ids else
           {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")} - {None, tokenizer.unk_token_id})
    return GenerationConfig(
        max_new_tokens=int(gen_kwargs.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS),
        min_new_tokens=int(gen_kwargs.get("min_new_tokens") or 0),
        do_sample=do_sample, temperature=temperature if do_sample else 1.0,
        top_p=float(gen_kwargs.get("top_p") or 1.0), eos_token_ids=tuple(sorted(eos)), until=until,
        seed=int(gen_kwargs["seed"]) if "seed" in gen_kwargs else None)


def _images(visuals: Any) -> list[Image.Image]:
    if visuals is None:
        return []
    items = visuals if isinstance(visuals, (list, tuple)) else [visuals]
    images = []
    for v in items:
        if isinstance(v, Image.Image):
            images.append(v.convert("RGB"))
        elif isinstance(v, dict) and isinstance(v.get("image"), Image.Image):
            images.append(v["image"].convert("RGB"))
        elif v is not None:
            raise TypeError(f"unsupported visual input {type(v).__name__} (images are supported; video tasks "
                            "need frames as images)")
    return images


def _result(record: dict[str, Any]) -> GenerationResult:
    return GenerationResult(text=record["prediction"], token_counts=TokenCounts(
        input_tokens=record["input_tokens"], output_tokens=record["output_tokens"]))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _rank_device(device: str | None) -> str | None:
    """Under an accelerate/torchrun launch on GPUs, each rank takes its own device."""
    local_rank = os.environ.get("LOCAL_RANK")
    if device in (None, "auto", "cuda") and local_rank is not None and torch.cuda.is_available():
        return f"cuda:{local_rank}"
    return device


def _log_throughput(tokens: int, seconds: float, requests: int) -> None:
    if tokens == 0 or seconds <= 0:
        return
    from lmms_eval.models.model_utils.gen_metrics import log_metrics

    log_metrics(total_elapsed_time=seconds, total_gen_tokens=tokens, avg_speed=tokens / seconds,
                additional_metrics={"total_requests": requests})


def _named_adapters(names: Sequence[str]) -> dict[str, type[CasaEvalLMM]]:
    return {adapter_class_name(n): type(adapter_class_name(n), (CasaEvalLMM,),
                                        {"model_name": n, "__module__": __name__}) for n in names}


# One importable class per model name (lmms-eval's manifests name classes, not constructor arguments).
globals().update(_named_adapters(list(all_models())))
