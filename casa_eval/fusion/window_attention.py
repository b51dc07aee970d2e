"""Windowed attention for CASA and the cross-attention family, with interchangeable backends.

Text tokens are split into *windows*: window 0 holds the text before the first image, window w >= 1 an
image (or a run of consecutive images) and the text after it. Each text query sees

* its window's *fixed* keys — the image tokens, plus learned registers for register CA — all of them, and
* for CASA, its window's text keys causally, including itself.

With keys laid out per window as ``[fixed | text]``, that is a causal mask aligned to the bottom-right
corner. For ``[a b | I1 I2 I3 | c d | J1 J2 J3 | e f]`` (windows 0, 1, 2), CASA's mask is::

          I1 I2 I3 J1 J2 J3 | a b c d e f
    a      .  .  .  .  .  . | ■ . . . . .      window 0: text only, plain causal
    b      .  .  .  .  .  . | ■ ■ . . . .
    c      ■  ■  ■  .  .  . | . . ■ . . .      window 1: [IMG1 | c d]
    d      ■  ■  ■  .  .  . | . . ■ ■ . .
    e      .  .  .  ■  ■  ■ | . . . . ■ .      window 2: [IMG2 | e f]
    f      .  .  .  ■  ■  ■ | . . . . ■ ■

Cross-attention drops the text columns; rows of a window with no fixed key (text before the first image)
get a zero output. Backends (all exact, `dense` is the reference):

* ``dense`` — one SDPA call with a global boolean mask. Cost grows with (total text) x (total keys).
* ``sdpa`` — windows of equal shape folded into the batch, `causal_lower_right` (or a small boolean mask
  when there is key padding). Cost grows linearly with the number of windows.
* ``flex`` — `flex_attention` over the packed sequence with a block-sparse `BlockMask` (compiled).
* ``flash`` — `flash_attn_varlen_func` with per-window ``cu_seqlens`` for queries and keys (GPU, fp16/bf16).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

KV = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class WindowLayout:
    """How the concatenated text of a batch splits into windows (identical for every sample of the batch).

    `text_counts[w]` text tokens belong to window w (padding included); window 0 precedes the first image.
    """

    text_counts: tuple[int, ...]

    @property
    def num_text(self) -> int:
        return sum(self.text_counts)

    @functools.cached_property
    def starts(self) -> tuple[int, ...]:
        out, acc = [], 0
        for n in self.text_counts:
            out.append(acc)
            acc += n
        return tuple(out)


@dataclass
class AttentionCache:
    """Per-forward memo of backend artefacts that every fusion layer can share (masks, index tensors)."""

    items: dict[Any, Any] = field(default_factory=dict)

    def get(self, key: Any, build: Callable[[], Any]) -> Any:
        if key not in self.items:
            self.items[key] = build()
        return self.items[key]


def flash_available() -> bool:
    try:
        import flash_attn  # noqa: F401
    except Exception:  # a broken CUDA extension raises more than ImportError
        return False
    return torch.cuda.is_available()


def resolve_backend(backend: str, device: torch.device, dtype: torch.dtype) -> str:
    """`auto` -> flash on CUDA with half precision when flash-attn imports, else sdpa."""
    if backend != "auto":
        return backend
    if device.type == "cuda" and dtype in (torch.float16, torch.bfloat16) and flash_available():
        return "flash"
    return "sdpa"


def window_attention(
    q: torch.Tensor,
    text_kv: KV | None,
    fixed_kv: Sequence[KV | None],
    layout: WindowLayout,
    *,
    key_mask: torch.Tensor | None = None,
    backend: str = "sdpa",
    cache: AttentionCache | None = None,
) -> torch.Tensor:
    """Attention of text queries over their window.

    Args:
        q: [B, H, Lt, D] text queries, in text order.
        text_kv: ([B, Hkv, Lt, D], same) text keys/values (CASA), or None (cross-attention).
        fixed_kv: one entry per window: ([B, Hkv, n_w, D], same) always-visible keys/values, or None.
        layout: text tokens per window; ``layout.num_text == Lt`` and ``len(fixed_kv) == len(text_counts)``.
        key_mask: [B, Lt] bool, False for padding text tokens (they are never attended to, except by
            themselves so that no row is empty).
        backend: dense | sdpa | flex | flash (resolve `auto` first with `resolve_backend`).

    Returns:
        [B, H, Lt, D]; rows with no visible key are zero.
    """
    if len(fixed_kv) != len(layout.text_counts) or layout.num_text != q.shape[2]:
        raise ValueError("window layout does not match the inputs")
    cache = cache or AttentionCache()
    impl = _BACKENDS.get(backend)
    if impl is None:
        raise ValueError(f"unknown attention backend {backend!r}; choose from {sorted(_BACKENDS)}")
    return impl(q, text_kv, fixed_kv, layout, key_mask, cache)


# ---------------------------------------------------------------------------------------------- dense


def _dense(q: torch.Tensor, text_kv: KV | None, fixed_kv: Sequence[KV | None], layout: WindowLayout,
           key_mask: torch.Tensor | None, cache: AttentionCache) -> torch.Tensor:
    device = q.device
    lt = q.shape[2]
    q_win = _text_window_ids(layout, device)
    keys, values, k_win, k_fixed = [], [], [], []
    for w, kv in enumerate(fixed_kv):
        if kv is not None and kv[0].shape[2] > 0:
            keys.append(kv[0])
            values.append(kv[1])
            k_win.append(torch.full((kv[0].shape[2],), w, device=device))
            k_fixed.append(torch.ones(kv[0].shape[2], dtype=torch.bool, device=device))
    if text_kv is not None:
        keys.append(text_kv[0])
        values.append(text_kv[1])
        k_win.append(q_win)
        k_fixed.append(torch.zeros(lt, dtype=torch.bool, device=device))
    if not keys:
        return torch.zeros_like(q)
    k, v = torch.cat(keys, dim=2), torch.cat(values, dim=2)
    kw, kf = torch.cat(k_win), torch.cat(k_fixed)
    n_fixed = int(kf.sum())
    q_idx = torch.arange(lt, device=device)
    k_text_idx = torch.cat([torch.full((n_fixed,), -1, device=device), q_idx]) if text_kv is not None \
        else torch.full((n_fixed,), -1, device=device)
    same = q_win[:, None] == kw[None, :]
    causal = kf[None, :] | (k_text_idx[None, :] <= q_idx[:, None])
    mask = (same & causal)[None, None]  # [1, 1, Lt, Lk]
    if key_mask is not None and text_kv is not None:
        valid = torch.cat([torch.ones(key_mask.shape[0], n_fixed, dtype=torch.bool, device=device), key_mask], 1)
        own = k_text_idx[None, :] == q_idx[:, None]
        mask = mask & (valid[:, None, None, :] | own[None, None])
    has_key = mask.any(-1, keepdim=True)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~has_key, enable_gqa=_gqa(q, k))
    return out * has_key.to(out.dtype)


# ---------------------------------------------------------------------------------------------- sdpa


def _sdpa(q: torch.Tensor, text_kv: KV | None, fixed_kv: Sequence[KV | None], layout: WindowLayout,
          key_mask: torch.Tensor | None, cache: AttentionCache) -> torch.Tensor:
    b, h, _, d = q.shape
    out = torch.zeros_like(q)
    groups: dict[tuple[int, int], list[int]] = {}
    for w, t in enumerate(layout.text_counts):
        n = 0 if fixed_kv[w] is None else fixed_kv[w][0].shape[2]  # type: ignore[index]
        if t > 0 and (n > 0 or text_kv is not None):
            groups.setdefault((n, t), []).append(w)
    for (n, t), windows in groups.items():
        g = len(windows)
        idx = cache.get(("sdpa-idx", layout, tuple(windows)), functools.partial(
            _window_rows, layout, tuple(windows), t, q.device))  # [G, t]
        qg = _fold(q[:, :, idx], b * g)  # [B*G, H, t, D]
        ks, vs = [], []
        if n > 0:
            ks.append(_fold(torch.stack([fixed_kv[w][0] for w in windows], 2), b * g))  # type: ignore[index]
            vs.append(_fold(torch.stack([fixed_kv[w][1] for w in windows], 2), b * g))  # type: ignore[index]
        if text_kv is not None:
            ks.append(_fold(text_kv[0][:, :, idx], b * g))
            vs.append(_fold(text_kv[1][:, :, idx], b * g))
        k, v = torch.cat(ks, 2), torch.cat(vs, 2)
        mask: Any
        if text_kv is None:
            mask = None
        elif key_mask is None:
            mask = causal_lower_right(t, n + t)
        else:
            base = cache.get(("lower-right", n, t), functools.partial(_lower_right_mask, n, t, q.device))
            own = torch.eye(t, dtype=torch.bool, device=q.device)
            valid = key_mask[:, idx].reshape(b * g, 1, 1, t) | own  # [B*G, 1, t, t]
            fixed = torch.ones(b * g, 1, t, n, dtype=torch.bool, device=q.device)
            mask = base & torch.cat([fixed, valid], dim=-1)
        og = F.scaled_dot_product_attention(qg, k, v, attn_mask=mask, enable_gqa=_gqa(qg, k))
        out[:, :, idx] = og.view(b, g, h, t, d).transpose(1, 2)
    return out


def _window_rows(layout: WindowLayout, windows: tuple[int, ...], t: int, device: torch.device) -> torch.Tensor:
    """[G, t] text indices of `windows` (all of length t)."""
    return torch.stack([torch.arange(layout.starts[w], layout.starts[w] + t, device=device) for w in windows])


def _fold(x: torch.Tensor, bg: int) -> torch.Tensor:
    """[B, Hx, G, t, D] -> [B*G, Hx, t, D]."""
    _, hx, _, t, d = x.shape
    return x.transpose(1, 2).reshape(bg, hx, t, d)


def _lower_right_mask(n_fixed: int, t: int, device: torch.device) -> torch.Tensor:
    text = torch.ones(t, t, dtype=torch.bool, device=device).tril()
    return torch.cat([torch.ones(t, n_fixed, dtype=torch.bool, device=device), text], dim=1)


# ---------------------------------------------------------------------------------------------- flex


@functools.lru_cache(maxsize=1)
def _compiled_flex() -> Callable[..., torch.Tensor]:
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def _flex(q: torch.Tensor, text_kv: KV | None, fixed_kv: Sequence[KV | None], layout: WindowLayout,
          key_mask: torch.Tensor | None, cache: AttentionCache) -> torch.Tensor:
    from torch.nn.attention.flex_attention import create_block_mask

    fixed_counts = tuple(0 if kv is None else int(kv[0].shape[2]) for kv in fixed_kv)
    if not any(fixed_counts) and text_kv is None:
        return torch.zeros_like(q)
    index = cache.get(("flex-index", layout, fixed_counts, text_kv is not None),
                      lambda: _FlexIndex.build(layout, fixed_counts, text_kv is not None, q.device))
    k, v = _packed_kv(text_kv, fixed_kv, layout)
    b = q.shape[0]
    valid = key_mask

    def mask_mod(bi: torch.Tensor, hi: torch.Tensor, qi: torch.Tensor, ki: torch.Tensor) -> torch.Tensor:
        same = index.q_win[qi] == index.k_win[ki]
        visible = index.k_fixed[ki] | (index.k_pos[ki] <= index.q_pos[qi])
        if valid is not None:
            own = index.k_pos[ki] == index.q_pos[qi]
            visible = visible & (index.k_fixed[ki] | own | valid[bi, index.k_text[ki]])
        return same & visible

    key = ("flex-mask", layout, fixed_counts, text_kv is not None, valid is not None, b)
    block = 64 if q.device.type == "cpu" else 128
    block_mask = cache.get(key, lambda: create_block_mask(
        mask_mod, b if valid is not None else None, None, q.shape[2], k.shape[2], device=q.device.type,
        BLOCK_SIZE=block))
    out = _compiled_flex()(q, k, v, block_mask=block_mask, enable_gqa=_gqa(q, k))
    if index.rows_without_keys:  # cross-attention text before the first image: defined as zero
        out = out * index.q_has_key[None, None, :, None].to(out.dtype)
    return out


@dataclass(frozen=True)
class _FlexIndex:
    """Per-layout index tensors: keys are packed window by window as [fixed_w | text_w]."""

    q_win: torch.Tensor
    q_pos: torch.Tensor
    k_win: torch.Tensor
    k_pos: torch.Tensor
    k_fixed: torch.Tensor
    k_text: torch.Tensor  # text index of each key (0 for fixed keys; only read where k_fixed is False)
    q_has_key: torch.Tensor
    rows_without_keys: bool

    @staticmethod
    def build(layout: WindowLayout, fixed_counts: tuple[int, ...], with_text: bool,
              device: torch.device) -> _FlexIndex:
        wins, poss, fixed, texts = [], [], [], []
        for w, (n, t) in enumerate(zip(fixed_counts, layout.text_counts, strict=True)):
            wins += [w] * n
            poss += [-1] * n
            fixed += [True] * n
            texts += [0] * n
            if with_text:
                wins += [w] * t
                poss += list(range(t))
                fixed += [False] * t
                texts += list(range(layout.starts[w], layout.starts[w] + t))
        q_win = _text_window_ids(layout, device)
        has = torch.tensor([n > 0 or with_text for n in fixed_counts], device=device)[q_win]
        as_tensor = functools.partial(torch.tensor, device=device)
        return _FlexIndex(
            q_win=q_win, q_pos=torch.cat([torch.arange(t, device=device) for t in layout.text_counts]),
            k_win=as_tensor(wins), k_pos=as_tensor(poss), k_fixed=as_tensor(fixed, dtype=torch.bool),
            k_text=as_tensor(texts), q_has_key=has, rows_without_keys=not bool(has.all()))


def _packed_kv(text_kv: KV | None, fixed_kv: Sequence[KV | None], layout: WindowLayout,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys and values packed window by window as [fixed_w | text_w] (the order `_FlexIndex` describes)."""
    ks, vs = [], []
    for w, t in enumerate(layout.text_counts):
        kv = fixed_kv[w]
        if kv is not None and kv[0].shape[2] > 0:
            ks.append(kv[0])
            vs.append(kv[1])
        if text_kv is not None and t > 0:
            s = layout.starts[w]
            ks.append(text_kv[0][:, :, s:s + t])
            vs.append(text_kv[1][:, :, s:s + t])
    return torch.cat(ks, 2), torch.cat(vs, 2)


# ---------------------------------------------------------------------------------------------- flash


def _flash(q: torch.Tensor, text_kv: KV | None, fixed_kv: Sequence[KV | None], layout: WindowLayout,
           key_mask: torch.Tensor | None, cache: AttentionCache) -> torch.Tensor:
    return flash_window_attention(q, text_kv, fixed_kv, layout, key_mask, _flash_varlen())


def _flash_varlen() -> Callable[..., torch.Tensor]:
    from flash_attn import flash_attn_varlen_func

    return cast(Callable[..., torch.Tensor], flash_attn_varlen_func)


def flash_window_attention(q: torch.Tensor, text_kv: KV | None, fixed_kv: Sequence[KV | None],
                           layout: WindowLayout, key_mask: torch.Tensor | None,
                           varlen: Callable[..., torch.Tensor]) -> torch.Tensor:
    """Pack every (sample, window) as one varlen segment — queries = its real text tokens, keys = [fixed |
    real text] — and call `varlen` (flash-attn's `flash_attn_varlen_func` signature). Causal in flash-attn
    >= 2.1 is aligned bottom-right, which is exactly the CASA window mask. Exposed for tests, which pass a
    pure-torch kernel with the same contract."""
    b, _, lt, _ = q.shape
    device = q.device
    valid = key_mask if key_mask is not None else torch.ones(b, lt, dtype=torch.bool, device=device)
    q_rows, k_parts, v_parts, q_lens, k_lens, q_index = [], [], [], [], [], []
    for bi in range(b):
        for w, t in enumerate(layout.text_counts):
            s = layout.starts[w]
            real = torch.nonzero(valid[bi, s:s + t]).flatten() + s
            fkv = fixed_kv[w]
            n = 0 if fkv is None else fkv[0].shape[2]
            if real.numel() == 0 or (n == 0 and text_kv is None):
                continue
            q_rows.append(q[bi, :, real].transpose(0, 1))  # [tq, H, D]
            q_index.append((bi, real))
            parts_k, parts_v = [], []
            if n:
                parts_k.append(fkv[0][bi].transpose(0, 1))  # type: ignore[index]
                parts_v.append(fkv[1][bi].transpose(0, 1))  # type: ignore[index]
            if text_kv is not None:
                parts_k.append(text_kv[0][bi, :, real].transpose(0, 1))
                parts_v.append(text_kv[1][bi, :, real].transpose(0, 1))
            k_parts.append(torch.cat(parts_k))
            v_parts.append(torch.cat(parts_v))
            q_lens.append(real.numel())
            k_lens.append(k_parts[-1].shape[0])
    out = torch.zeros_like(q)
    if not q_rows:
        return out
    cu_q = F.pad(torch.tensor(q_lens, device=device).cumsum(0), (1, 0)).to(torch.int32)
    cu_k = F.pad(torch.tensor(k_lens, device=device).cumsum(0), (1, 0)).to(torch.int32)
    packed = varlen(torch.cat(q_rows), torch.cat(k_parts), torch.cat(v_parts), cu_q, cu_k,
                    max(q_lens), max(k_lens), causal=text_kv is not None)
    for (bi, real), chunk in zip(q_index, packed.split(q_lens), strict=True):
        out[bi, :, real] = chunk.transpose(0, 1).to(out.dtype)
    return out


# ---------------------------------------------------------------------------------------------- helpers


def _text_window_ids(layout: WindowLayout, device: torch.device) -> torch.Tensor:
    return torch.cat([torch.full((t,), w, device=device, dtype=torch.long)
                      for w, t in enumerate(layout.text_counts)])


def _gqa(q: torch.Tensor, k: torch.Tensor) -> bool:
    return q.shape[1] != k.shape[1]


_BACKENDS: dict[str, Callable[..., torch.Tensor]] = {"dense": _dense, "sdpa": _sdpa, "flex": _flex,
                                                      "flash": _flash}


def stream_window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_fixed: int, *,
                            causal: bool, key_mask: torch.Tensor | None = None) -> torch.Tensor:
    """One window in streaming: `L` new text queries against [fixed (n_fixed) | window text so far + new].

    q: [B, H, L, D]; k, v: [B, Hkv, n_fixed + T, D] where the last L text keys are the queries' own.
    `key_mask` [B, T] marks padding among the text keys. With one query (decode) no mask is needed at all.
    """
    lq, lk = q.shape[2], k.shape[2]
    mask: Any = None
    if causal and key_mask is None and lq > 1:
        mask = causal_lower_right(lq, lk)
    elif key_mask is not None:
        t = lk - n_fixed
        text_cols = torch.arange(t, device=q.device)
        rows = torch.arange(t - lq, t, device=q.device)
        visible = (text_cols[None, :] <= rows[:, None]) if causal else torch.ones(lq, t, dtype=torch.bool,
                                                                                   device=q.device)
        own = text_cols[None, :] == rows[:, None]
        text = visible[None, None] & (key_mask[:, None, None, :] | own[None, None])
        fixed = torch.ones(q.shape[0], 1, lq, n_fixed, dtype=torch.bool, device=q.device)
        mask = torch.cat([fixed, text], dim=-1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=_gqa(q, k))
