"""`casa-eval profile`: streaming cost per conversation turn (works without lmms-eval and plotly)."""

from __future__ import annotations

import inspect
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from casa_eval.cli.console import console, error, make_progress, say, table
from casa_eval.errors import UserError


def profile(
    profile: Annotated[str, typer.Option("--profile", "-p", help="Profile name (see `casa-eval list profiles`) "
                                         "or path to a profile YAML.")] = "cpu-smoke",
    models: Annotated[str | None, typer.Option("--models", "-m", help="Comma-separated models (default: the "
                                               "profile's). zoo-text-only, the floor, is always added.")] = None,
    turns: Annotated[int | None, typer.Option(min=1, help="Override the profile's turns.")] = None,
    repeats: Annotated[int | None, typer.Option(min=1, help="Override the profile's repeats.")] = None,
    output_dir: Annotated[Path | None, typer.Option("--output-dir", "-o", help="Where results.json and "
                                                    "turns.csv go (default reports/profile-<id>).")] = None,
    video: Annotated[Path | None, typer.Option(help="Stream frames decoded from this video (PyAV) at the "
                                               "profile's fps.")] = None,
    memory_budget: Annotated[str | None, typer.Option(help="GPU: fraction (0-1) or size ('40GiB') per "
                                                      "process; CPU: size of the conversation state.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:N or auto (default: the profile's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random weights.")] = 0,
    trained: Annotated[Path | None, typer.Option(help="A `casa-eval train` output directory: its checkpoints are "
                                                 "the lab-* models (default: the shipped ones).")] = None,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow checkpoints that ship their own modeling "
                                                    "code.")] = False,
    cross_attention_cache: Annotated[str, typer.Option(
        help="mllama (gated-xattn) cross-attention K/V: 'latest' keeps the latest run of images (the model's "
             "semantics, default), 'append' every image as transformers' cache does, 'replace' the latest image "
             "only.")] = "latest",
    loop: Annotated[str, typer.Option(help="Turn loop: 'casa-eval' (a user turn per frame, CUDA events) or "
                                           "'kyutai' (Kyutai's speed_bench_streaming.py: frames continuing one "
                                           "assistant turn, per-forward timing, its head/tail statistics).")
                    ] = "casa-eval",
    resume: Annotated[bool, typer.Option(help="Continue an interrupted profile in --output-dir with its stored "
                                         "settings: finished turns are kept, the missing ones measured.")] = False,
) -> None:
    """Time and memory per turn of a streaming conversation, for every model, side by side."""
    from casa_eval._env import prepare_environment

    prepare_environment()
    from casa_eval.config import validate_data
    from casa_eval.evaluation.preflight import check_video, check_writable
    from casa_eval.profiling.profile_config import ProfileConfig, resolve_profile_config
    from casa_eval.profiling.runner import TURN_JOURNAL
    from casa_eval.registry import resolve_model, split_model_paths, split_names

    options: dict[str, Any] = {"profile": profile, "models": models, "turns": turns, "repeats": repeats,
               "video": None if video is None else str(video.resolve()), "memory_budget": memory_budget,
               "device": device, "seed": seed, "trained": None if trained is None else str(trained.resolve()),
               "trust_remote_code": trust_remote_code, "cross_attention_cache": cross_attention_cache, "loop": loop}
    stored_config: dict[str, Any] | None = None
    if resume:
        if output_dir is None:
            raise UserError("--resume needs --output-dir: the directory of the interrupted profile")
        options, stored_config = _stored_settings(output_dir, options)
        profile, models, turns, repeats = options["profile"], options["models"], options["turns"], options["repeats"]
        video = None if options["video"] is None else Path(options["video"])
        memory_budget, device, seed = options["memory_budget"], options["device"], options["seed"]
        trained = None if options["trained"] is None else Path(options["trained"])
        trust_remote_code, cross_attention_cache = options["trust_remote_code"], options["cross_attention_cache"]
        loop = options["loop"]
    config = (validate_data(ProfileConfig, stored_config, str(output_dir / PROFILE_SETTINGS))
              if stored_config is not None and output_dir is not None
              else resolve_profile_config(profile, memory_budget=memory_budget))  # light checks first
    check_video(video)
    from casa_eval.models.families.mllama import CROSS_ATTENTION_CACHE_POLICIES

    if cross_attention_cache not in CROSS_ATTENTION_CACHE_POLICIES:
        raise UserError(f"--cross-attention-cache must be one of {', '.join(CROSS_ATTENTION_CACHE_POLICIES)}, "
                        f"not {cross_attention_cache!r}")
    from casa_eval.profiling.kyutai_loop import LOOPS

    if loop not in LOOPS:
        raise UserError(f"--loop must be one of {', '.join(LOOPS)}, not {loop!r}")
    names_given, paths = split_model_paths(split_names(models))
    from casa_eval.registry import trained_models

    if trained is not None and not trained.is_dir():
        raise UserError(f"--trained {trained} is not a directory")
    found = trained_models(trained)
    if trained is not None and not names_given:
        names_given = list(found)
    for name in names_given:
        resolve_model(name)
    out = output_dir or Path("reports") / f"profile-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    check_writable(out)
    from casa_eval.models.loading import resolve_device
    from casa_eval.profiling.document import add_profile, new_profile_results, profile_model_names

    names = profile_model_names(config, names_given or None)
    for name in names:  # trained lab models: their checkpoint unless NAME=DIR was given
        if name.startswith("lab-") and name not in paths:
            if name not in found:
                raise UserError(f"no trained checkpoint for {name}; trained models: {', '.join(found) or '(none)'}")
            paths[name] = str(found[name][1])
    from casa_eval.models.availability import model_problems

    problems = [p for n in names for p in model_problems(resolve_model(n), paths.get(n),
                                                          trust_remote_code=trust_remote_code)]
    if problems:
        raise UserError(problems)
    from casa_eval.cli.verify_cmd import warn_unverified

    warn_unverified(names, paths, device or config.device)

    target = str(resolve_device(device or config.device))
    results = new_profile_results(target, seed)
    if not resume:  # a new profile: turns journaled by an earlier one in this directory are not its own
        (out / TURN_JOURNAL).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / PROFILE_SETTINGS).write_text(json.dumps({**options, "config": config.model_dump(mode="json")},
                                                   indent=2) + "\n")
    with make_progress() as progress:
        reporter = ProfileProgress(progress)
        try:
            add_profile(results, out, config, names, reporter=reporter, turns=turns, repeats=repeats, video=video,
                        device=target, seed=seed, checkpoints=paths, trust_remote_code=trust_remote_code,
                        cross_attention_cache=cross_attention_cache, journal=out / TURN_JOURNAL, loop=loop)
        except KeyboardInterrupt:
            progress.stop()
            results.status.state = "interrupted"
            results.save(out)
            error(f"interrupted; finished turns are kept in {out / TURN_JOURNAL}. Continue with: "
                  f"casa-eval profile --resume --output-dir {out}")
            raise typer.Exit(130) from None
    assert results.efficiency is not None
    results.config.models = results.efficiency.model_records
    results.status.state = "complete"
    results.finished_utc = datetime.now(UTC)
    results.save(out)
    print_profile_summary(results.efficiency)
    say(f"results: [bold]{escape(str(out / 'results.json'))}[/]  per-turn records: "
        f"[bold]{escape(str(out / 'turns.csv'))}[/]")


PROFILE_SETTINGS = "profile_settings.json"


def _stored_settings(out: Path, given: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The options and resolved profile a profile in `out` started with; an option given now that differs
    from them is refused in one line (one document holds one set of settings)."""
    from casa_eval.config import read_json

    path = out / PROFILE_SETTINGS
    if not path.is_file():
        raise UserError(f"nothing to resume in {out} (no {PROFILE_SETTINGS})")
    stored = read_json(path, "profile settings")
    if isinstance(stored, dict):
        stored.setdefault("loop", "casa-eval")  # settings stored before the loop could be chosen
    if not isinstance(stored, dict) or not isinstance(stored.get("config"), dict) or not given.keys() <= stored.keys():
        raise UserError(f"{path}: malformed profile settings; start a new profile with another --output-dir")
    defaults = {name: p.default for name, p in inspect.signature(profile).parameters.items()}
    changed = [k for k, v in given.items() if v != defaults[k] and v != stored[k]]
    if changed:
        raise UserError(f"--resume continues {out} with its stored settings; {', '.join(changed)} differ — drop "
                        "those options, or start a new profile with another --output-dir")
    return {k: stored[k] for k in given}, stored["config"]


class ProfileProgress:
    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.stage_task = progress.add_task("starting", total=None)
        self.bars: dict[str, Any] = {}

    def stage(self, message: str) -> None:
        self.progress.update(self.stage_task, description=message, visible=True)

    def model_started(self, name: str, total_turns: int) -> None:
        self.progress.update(self.stage_task, visible=False)
        self.bars[name] = self.progress.add_task(name, total=total_turns)

    def turn_done(self, name: str) -> None:
        self.progress.advance(self.bars[name])

    def model_finished(self, summary: Any) -> None:
        bar = self.bars.get(summary.model)
        if bar is not None:
            note = f"  OOM at turn {summary.oom_turn}" if summary.oom_turn is not None else ""
            self.progress.update(bar, description=f"{summary.model}{note}",
                                 total=self.progress.tasks[bar].completed)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def print_profile_summary(section: Any) -> None:
    sequential = section.schedule == "sequential"
    rows = table("model", "turns", "TTFT ms\nfirst→last", "decode ms/tok\nfirst→last", "turn ms\nfirst→last",
                  "× text-only\nfirst→last", "slope\nms/turn [95% CI]", "KV tokens\nlast",
                  "peak MiB" if sequential else "state KiB\nlast", "KV ==\nanalytic",
                  title=f"streaming profile {section.profile} on {section.device}, {section.schedule}, "
                        f"{section.loop} loop (medians over repeats of the first/last 10% of turns)")
    for m in section.models:
        slope = m.slopes.get("turn_ms")
        slope_text = "—" if slope is None else f"{slope.value:+.2f} [{slope.ci_low:+.2f}, {slope.ci_high:+.2f}]"
        turns = f"{m.turns_completed}" + (f" (OOM@{m.oom_turn})" if m.oom_turn is not None else "")
        if sequential:
            memory = _fmt(None if m.peak_memory_bytes is None else m.peak_memory_bytes / 2**20, 0)
        else:  # process memory is shared by the interleaved models: show each model's own state instead
            memory = _fmt((m.last.get("kv_bytes", 0) + m.last.get("side_state_bytes", 0)) / 2**10, 0)
        rows.add_row(
            m.model, turns,
            f"{_fmt(m.first.get('ttft_ms'))}→{_fmt(m.last.get('ttft_ms'))}",
            f"{_fmt(m.first.get('decode_ms_per_token'), 2)}→{_fmt(m.last.get('decode_ms_per_token'), 2)}",
            f"{_fmt(m.first.get('turn_ms'))}→{_fmt(m.last.get('turn_ms'))}",
            f"{_fmt(m.ratio_to_floor_first, 2)}→{_fmt(m.ratio_to_floor_last, 2)}", slope_text,
            f"{m.last.get('kv_tokens', 0):,.0f}", memory,
            "yes" if m.kv_bytes_match_analytic else "[red]NO[/]")
    console.print(rows)
    kyutai = [m for m in section.models if m.kyutai is not None]
    if kyutai:
        summary = table("model", "TTFT ms\nfirst / last", "decode tok/s\nfirst / last", "final KV\ntokens",
                        "peak GiB", "total s",
                        title="Kyutai's statistics (speed_bench_streaming.py: means over the first/last "
                              "max(1, n // 10) turns)")
        for m in kyutai:
            k = m.kyutai or {}
            gib = k.get("peak_gpu_gib")
            summary.add_row(m.model + (" (OOM)" if k.get("oom") else ""),
                            f"{_fmt(k.get('ttft_ms_first_turns'))} / {_fmt(k.get('ttft_ms_last_turns'))}",
                            f"{_fmt(k.get('decode_tok_per_s_first_turns'))} / "
                            f"{_fmt(k.get('decode_tok_per_s_last_turns'))}",
                            f"{k.get('final_kv_tokens', 0):,}", _fmt(gib, 2), _fmt(k.get("total_time_s")))
        console.print(summary)
    if section.crossovers:
        baseline = section.crossovers[0].baseline
        cross = table("model", "turn time", "decode ms/token",
                      title=f"cheaper than {baseline} from turn (measured; fitted lines cross at)")
        for model in dict.fromkeys(c.model for c in section.crossovers):
            cells = {c.metric: c for c in section.crossovers if c.model == model}
            cross.add_row(model, *(_crossing(cells.get(k)) for k in ("turn_ms", "decode_ms_per_token")))
        console.print(cross)


def _crossing(c: Any) -> str:
    if c is None:
        return "—"
    measured = "never" if c.turn is None else str(c.turn)
    return f"{measured} ({_fmt(c.turn_fit)})"
