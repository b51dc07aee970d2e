"""Every CASA/CA window-attention backend matches the float64 dense reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from casa_eval.fusion.window_attention import (
    WindowLayout,
    flash_available,
    flash_window_attention,
    stream_window_attention,
    window_attention,
)

COUNTS = (5, 7, 3, 9, 7)  # text-only window, then four windows with ragged text
IMAGES = (0, 6, 6, 4, 6)
B, H, HKV, D = 2, 4, 2, 16


def _inputs(dtype: torch.dtype = torch.float64) -> tuple:
    g = torch.Generator().manual_seed(0)
    lt = sum(COUNTS)
    q = torch.randn(B, H, lt, D, generator=g, dtype=dtype)
    text = (torch.randn(B, HKV, lt, D, generator=g, dtype=dtype), torch.randn(B, HKV, lt, D, generator=g, dtype=dtype))
    fixed = [None if n == 0 else (torch.randn(B, HKV, n, D, generator=g, dtype=dtype),
                                  torch.randn(B, HKV, n, D, generator=g, dtype=dtype)) for n in IMAGES]
    mask = torch.ones(B, lt, dtype=torch.bool)
    mask[0, :2] = False  # left padding at the start of window 0
    mask[1, 5:8] = False  # and at the start of window 1
    return q, text, fixed, mask


def _naive(q: torch.Tensor, text: tuple | None, fixed: list, mask: torch.Tensor | None) -> torch.Tensor:
    """Loop over samples, windows and rows: the definition, written as plainly as possible."""
    out = torch.zeros_like(q)
    rep = q.shape[1] // HKV
    starts = [sum(COUNTS[:w]) for w in range(len(COUNTS))]
    for b in range(q.shape[0]):
        for w, t in enumerate(COUNTS):
            for i in range(t):
                row = starts[w] + i
                keys, values = [], []
                if fixed[w] is not None:
                    keys.append(fixed[w][0][b])
                    values.append(fixed[w][1][b])
                if text is not None:
                    cols = [starts[w] + j for j in range(i + 1)
                            if mask is None or mask[b, starts[w] + j] or j == i]
                    keys.append(text[0][b][:, cols])
                    values.append(text[1][b][:, cols])
                if not keys:
                    continue
                k = torch.cat(keys, 1).repeat_interleave(rep, 0)
                v = torch.cat(values, 1).repeat_interleave(rep, 0)
                scores = (q[b, :, row:row + 1] @ k.transpose(-1, -2)) / D**0.5
                out[b, :, row] = (scores.softmax(-1) @ v)[:, 0]
    return out


@pytest.mark.parametrize("with_text", [True, False], ids=["casa", "cross-attention"])
@pytest.mark.parametrize("padded", [False, True], ids=["dense-batch", "padded-batch"])
def test_dense_reference_is_the_definition(with_text: bool, padded: bool) -> None:
    q, text, fixed, mask = _inputs()
    text = text if with_text else None
    mask = mask if padded else None
    ref = window_attention(q, text, fixed, WindowLayout(COUNTS), key_mask=mask, backend="dense")
    assert (ref - _naive(q, text, fixed, mask)).abs().max().item() < 1e-12


@pytest.mark.parametrize("backend", ["sdpa", "flex"])
@pytest.mark.parametrize("with_text", [True, False], ids=["casa", "cross-attention"])
@pytest.mark.parametrize("padded", [False, True], ids=["dense-batch", "padded-batch"])
def test_backend_matches_float64_reference(backend: str, with_text: bool, padded: bool) -> None:
    if backend == "flex" and padded and not with_text:
        pytest.skip("cross-attention has no text keys: padding does not change the flex mask")
    q, text, fixed, mask = _inputs()
    text = text if with_text else None
    mask = mask if padded else None
    ref = window_attention(q, text, fixed, WindowLayout(COUNTS), key_mask=mask, backend="dense")
    as32 = lambda kv: None if kv is None else (kv[0].float(), kv[1].float())  # noqa: E731
    out = window_attention(q.float(), as32(text), [as32(f) for f in fixed], WindowLayout(COUNTS),
                           key_mask=mask, backend=backend)
    assert (out.double() - ref).abs().max().item() <= 1e-5


def _varlen_kernel(q, k, v, cu_q, cu_k, max_q, max_k, causal=False):  # type: ignore[no-untyped-def]
    """flash-attn's documented varlen contract in plain torch: segments never interact, causal is
    aligned to the bottom-right corner of each segment."""
    out = []
    for s in range(len(cu_q) - 1):
        qs, ks, vs = (x.transpose(0, 1) for x in (q[cu_q[s]:cu_q[s + 1]], k[cu_k[s]:cu_k[s + 1]],
                                                  v[cu_k[s]:cu_k[s + 1]]))
        mask = None
        if causal:
            lq, lk = qs.shape[1], ks.shape[1]
            mask = torch.ones(lq, lk, dtype=torch.bool).tril(diagonal=lk - lq)
        out.append(F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, enable_gqa=True).transpose(0, 1))
    return torch.cat(out)


@pytest.mark.parametrize("with_text", [True, False], ids=["casa", "cross-attention"])
def test_flash_packing_with_a_reference_varlen_kernel(with_text: bool) -> None:
    """The cu_seqlens packing of the flash backend, checked with a kernel that has flash-attn's contract."""
    q, text, fixed, mask = _inputs()
    text = text if with_text else None
    ref = window_attention(q, text, fixed, WindowLayout(COUNTS), key_mask=mask, backend="dense")
    out = flash_window_attention(q, text, fixed, WindowLayout(COUNTS), mask, _varlen_kernel)
    real = mask[:, None, :, None]  # padded rows are never computed by the varlen path
    assert ((out - ref) * real).abs().max().item() < 1e-12


def _gpu_backend_available(backend: str) -> bool:
    return flash_available() if backend == "flash" else torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["sdpa", "flex", "flash"])
@pytest.mark.parametrize("with_text", [True, False], ids=["casa", "cross-attention"])
@pytest.mark.parametrize("padded", [False, True], ids=["dense-batch", "padded-batch"])
def test_backend_matches_the_reference_on_gpu(backend: str, with_text: bool, padded: bool) -> None:
    """Each backend on CUDA in bf16 (flash-attn's dtype) against the float64 dense reference on the CPU; with
    padding, the rows of real tokens (padded rows are never read)."""
    if not _gpu_backend_available(backend):
        pytest.skip("flash-attn is not installed or no CUDA device is present" if backend == "flash"
                    else "no CUDA device")
    q, text, fixed, mask = _inputs()
    text = text if with_text else None
    mask = mask if padded else None
    ref = window_attention(q, text, fixed, WindowLayout(COUNTS), key_mask=mask, backend="dense")
    cuda = lambda kv: None if kv is None else (kv[0].cuda().bfloat16(), kv[1].cuda().bfloat16())  # noqa: E731
    out = window_attention(q.cuda().bfloat16(), cuda(text), [cuda(f) for f in fixed], WindowLayout(COUNTS),
                           key_mask=None if mask is None else mask.cuda(), backend=backend).double().cpu()
    real = torch.ones_like(ref) if mask is None else mask[:, None, :, None].double()
    assert ((out - ref) * real).abs().max().item() < 2e-2  # bf16 inputs


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_flex_backend_on_gpu_in_float32() -> None:
    q, text, fixed, mask = _inputs()
    ref = window_attention(q, text, fixed, WindowLayout(COUNTS), key_mask=mask, backend="dense")
    cuda = lambda kv: None if kv is None else (kv[0].cuda().float(), kv[1].cuda().float())  # noqa: E731
    out = window_attention(q.cuda().float(), cuda(text), [cuda(f) for f in fixed], WindowLayout(COUNTS),
                           key_mask=mask.cuda(), backend="flex")
    assert (out.double().cpu() - ref).abs().max().item() <= 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("mechanism", ["casa", "insertion"])
def test_a_zoo_model_streams_on_gpu_as_it_runs_in_parallel(mechanism: str) -> None:
    """A whole zoo model on CUDA in bf16 with `auto` kernels (flash in fusion and backbone where flash-attn is
    installed): streamed logits equal the parallel forward's within bf16 tolerance."""
    from casa_eval.fusion import FusionConfig, FusionModel, ImageSegment
    from tests.fusion.helpers import conversation, stream_logits

    device = "cuda"
    model = FusionModel(FusionConfig(mechanism=mechanism, dtype="bfloat16", attention_backend="auto")).to(device)
    backend = model.attention_backend()
    assert (backend == "flash") == (flash_available() and device == "cuda")
    assert model.backbone_attention() == ("flash_attention_2" if backend == "flash" else "sdpa")
    segments = [ImageSegment(s.pixels.to(device)) if isinstance(s, ImageSegment) else s
                for s in conversation(turns=2, text=6)]
    with torch.inference_mode():
        parallel = model(segments).logits.float()
        streamed = stream_logits(model, segments).float()
    assert (parallel - streamed).abs().max().item() < 0.1 * parallel.abs().max().item()


def test_stream_window_attention_is_bottom_right_causal() -> None:
    g = torch.Generator().manual_seed(1)
    n, t_prev, lq = 6, 4, 3
    q = torch.randn(1, H, lq, D, generator=g, dtype=torch.float64)
    k = torch.randn(1, HKV, n + t_prev + lq, D, generator=g, dtype=torch.float64)
    v = torch.randn_like(k)
    out = stream_window_attention(q, k, v, n, causal=True)
    for i in range(lq):
        visible = n + t_prev + i + 1
        row = F.scaled_dot_product_attention(q[:, :, i:i + 1], k[:, :, :visible], v[:, :, :visible],
                                             enable_gqa=True)
        assert torch.allclose(out[:, :, i:i + 1], row)


def test_unknown_backend_is_rejected() -> None:
    q, text, fixed, _ = _inputs()
    with pytest.raises(ValueError, match="unknown attention backend"):
        window_attention(q, text, fixed, WindowLayout(COUNTS), backend="triton")
