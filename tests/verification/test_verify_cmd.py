"""`casa-eval verify` on the tiny checkpoint of every real family: the streaming adapter agrees with the
checkpoint's own generation (exit 0); an adapter missing one call disagrees, named by check (exit 1); what
cannot run is one line (exit 2). The verdict is kept per machine and reaches the model record."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from casa_eval.cli import app
from casa_eval.errors import UserError
from casa_eval.export.kyutai import export_zoo_mechanism
from casa_eval.verification.store import STORE_ENV

# `casa-eval tiny` family -> the registry name it stands in for, and whether it ships remote code
TINY = {"qwen2_5_vl": ("insertion-qwen", False), "llava": ("insertion-llava", False),
        "mllama": ("gated-xattn", False), "blip2": ("qformer", False), "kyutai-casa": ("casa", True),
        "kyutai-casa-shared": ("casa-shared", True), "kyutai-insertion": ("insertion", True)}


@pytest.fixture(scope="session")
def tiny_dir(tiny_checkpoint: Callable[[str], Path], tiny_kyutai: dict[str, Path],
             tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """`casa-eval tiny` family -> its checkpoint directory (the session's, built once)."""
    shared: list[Path] = []

    def get(family: str) -> Path:
        if family == "kyutai-casa-shared":
            if not shared:
                shared.append(export_zoo_mechanism("casa_shared", tmp_path_factory.mktemp("kyutai-casa-shared")))
            return shared[0]
        if family.startswith("kyutai-"):
            return tiny_kyutai[family.removeprefix("kyutai-")]
        return tiny_checkpoint(family)

    return get


@pytest.fixture(autouse=True)
def verdict_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    store = tmp_path / "verdicts"
    monkeypatch.setenv(STORE_ENV, str(store))
    return store


def verify(*args: str) -> tuple[int, str]:
    """`casa-eval verify ARGS` in this process: (exit status, output), a UserError as `main` reports it."""
    result = CliRunner().invoke(app, ["verify", *args])
    if isinstance(result.exception, UserError):
        return result.exception.exit_code, str(result.exception)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def arguments(family: str, directory: Path, *extra: str) -> list[str]:
    name, remote = TINY[family]
    return [f"{name}={directory}", *(["--trust-remote-code"] if remote else []), *extra]


@pytest.mark.parametrize("family", TINY)
def test_every_tiny_family_agrees_with_its_own_generation(family: str, tiny_dir: Callable[[str], Path],
                                                         tmp_path: Path) -> None:
    out = tmp_path / "verdict.json"
    code, output = verify(*arguments(family, tiny_dir(family), "-o", str(out)))
    assert code == 0, output
    name = TINY[family][0]
    assert f"verdict: {name} agrees with its own generation" in output
    verdict = json.loads(out.read_text())
    assert verdict["verdict"] == "passed" and verdict["dtype"] == "float32"
    assert verdict["max_logit_diff"] <= 1e-4
    checks = {c["name"]: c for c in verdict["checks"]}
    for turn in ("single turn 1", "multi turn 1", "multi turn 2"):  # the second turn is compared too
        for check in ("greedy tokens", "logits", "KV bytes == analytic", "KV tokens == reference"):
            assert checks[f"{turn}: {check}"]["status"] == "pass", (turn, check)
    assert checks["single turn 1: greedy tokens"]["value"] == "8/8 identical"


def _kyutai_without_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Kyutai adapter without its `start_ca_streaming_states()` call: decoded tokens lose the image."""
    from casa_eval.models.kyutai import KyutaiSession

    def new_window(self: Any, images: int) -> None:
        self.model.hf.reset_ca_streaming_states()
        self.window_image_tokens, self.window_text_tokens = images * self.model.image_tokens_per_image, 0

    monkeypatch.setattr(KyutaiSession, "_new_window", new_window)


def _llava_without_image_prefill(monkeypatch: pytest.MonkeyPatch) -> None:
    """The LLaVA adapter without the prefill of the image's embeddings."""
    from casa_eval.models.families.llava import LlavaSession

    monkeypatch.setattr(LlavaSession, "_append_image", lambda self, images: None)


@pytest.mark.parametrize(("family", "break_adapter", "failing"), [
    ("kyutai-casa", _kyutai_without_start, ["single turn 1: logits", "single turn 1: side state == analytic"]),
    ("llava", _llava_without_image_prefill, ["single turn 1: logits", "single turn 1: KV tokens == reference"]),
])
def test_an_adapter_missing_one_call_disagrees_and_names_the_checks(
        family: str, break_adapter: Callable[[pytest.MonkeyPatch], None], failing: list[str],
        tiny_dir: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, verdict_store: Path) -> None:
    break_adapter(monkeypatch)
    code, output = verify(*arguments(family, tiny_dir(family)))
    assert code == 1
    assert "Traceback" not in output
    for check in failing:
        assert f"FAIL {check}: " in output
    assert f"verdict: {TINY[family][0]} disagrees with its own generation" in output
    (stored,) = verdict_store.glob("*.json")
    verdict = json.loads(stored.read_text())
    assert verdict["verdict"] == "failed"
    assert set(failing) <= {c["name"] for c in verdict["checks"] if c["status"] == "fail"}


@pytest.mark.parametrize(("args", "message"), [
    (["no-such-model=/tmp"], "unknown model 'no-such-model'"),
    (["insertion-llava=/nonexistent/llava"], "/nonexistent/llava is not a checkpoint directory (no config.json)"),
    (["zoo-casa"], "model zoo-casa is built by casa-eval's zoo"),
])
def test_what_cannot_run_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    code, output = verify(*args)
    assert code == 2 and message in output and "\n" not in output


def test_remote_code_needs_the_flag(tiny_dir: Callable[[str], Path]) -> None:
    directory = tiny_dir("kyutai-casa")
    code, output = verify(f"casa={directory}")
    assert code == 2 and output == (f"model casa: {directory} runs modeling code shipped with the checkpoint; pass "
                                    "--trust-remote-code to allow it")


def test_the_verdict_reaches_the_model_record_and_the_warning(
        tiny_dir: Callable[[str], Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Loading a real checkpoint records its verdict on this machine (`unverified` until `verify` passed), and
    `run`/`profile` warn (`warn_unverified`) until then; zoo models are not concerned."""
    from casa_eval.cli.verify_cmd import warn_unverified
    from casa_eval.models.loading import load_model
    from casa_eval.results.efficiency import ModelRecord

    directory = tiny_dir("blip2")
    before = load_model("qformer", checkpoint=directory, device="cpu").record
    assert ModelRecord(**before).verification is not None
    assert before["verification"]["status"] == "unverified"
    warn_unverified(["qformer", "zoo-casa"], {"qformer": str(directory)}, "cpu")
    warned = capsys.readouterr().err
    assert f"casa-eval verify qformer={directory}" in warned and "zoo-casa" not in warned

    assert verify(f"qformer={directory}")[0] == 0
    after = load_model("qformer", checkpoint=directory, device="cpu").record["verification"]
    assert after["status"] == "passed" and after["dtype"] == "float32" and not after["failed_checks"]
    warn_unverified(["qformer"], {"qformer": str(directory)}, "cpu")
    assert "warning" not in capsys.readouterr().err
    assert load_model("zoo-casa", device="cpu").record.get("verification") is None
