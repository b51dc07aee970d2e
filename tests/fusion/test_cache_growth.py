"""Exact cache accounting per turn: what grows in the backbone cache and what stays in the side state."""

from __future__ import annotations

import pytest
import torch

from casa_eval.fusion import FusionConfig, FusionModel

N, T, TURNS, R, Q = 64, 7, 6, 8, 16


def _stats_per_turn(mechanism: str) -> list:
    model = FusionModel(FusionConfig(mechanism=mechanism, registers=R, qformer_queries=Q))
    assert model.num_image_tokens == N
    session = model.new_session()
    g = torch.Generator().manual_seed(0)
    stats = []
    for _ in range(TURNS):
        session.add_image(torch.rand(1, 3, 64, 64, generator=g) * 2 - 1)
        session.add_text(torch.randint(0, 50_000, (1, T - 2), generator=g))
        session.decode(torch.tensor([11]))
        session.decode(torch.tensor([12]))
        stats.append(session.cache_stats())
    return stats


GROWTH = {"insertion": N + T, "qformer": Q + T, "cross_attention": T, "gated_cross_attention": T,
          "register_cross_attention": T, "casa": T, "casa_shared": T, "text_only": T}
SIDE = {"insertion": 0, "qformer": 0, "cross_attention": N, "gated_cross_attention": N,
        "register_cross_attention": N + R, "casa": N + T, "casa_shared": N + T, "text_only": 0}


@pytest.mark.parametrize("mechanism", sorted(GROWTH))
def test_backbone_cache_grows_by_the_expected_tokens_per_turn(mechanism: str) -> None:
    stats = _stats_per_turn(mechanism)
    tokens = [s.kv_tokens for s in stats]
    assert tokens == [GROWTH[mechanism] * (turn + 1) for turn in range(TURNS)]
    for s in stats:  # measured from the tensors == analytic 2*L*Hkv*D*tokens*bytes
        assert s.kv_tokens == s.analytic_kv_tokens
        assert s.kv_bytes == s.analytic_kv_bytes


@pytest.mark.parametrize("mechanism", sorted(SIDE))
def test_side_state_is_constant_in_turns(mechanism: str) -> None:
    stats = _stats_per_turn(mechanism)
    assert {s.side_state_tokens for s in stats} == {SIDE[mechanism]}
    assert len({s.side_state_bytes for s in stats}) == 1
    for s in stats:
        assert s.side_state_bytes == s.analytic_side_state_bytes


def test_casa_side_state_holds_the_current_window_text_only() -> None:
    model = FusionModel(FusionConfig(mechanism="casa"))
    session = model.new_session()
    session.add_text(torch.tensor([[1, 2, 3]]))  # text-only window before any image
    assert session.cache_stats().side_state_tokens == 3
    session.add_image(torch.zeros(1, 3, 64, 64))
    assert session.cache_stats().side_state_tokens == N  # the new window drops the old text
    session.add_text(torch.tensor([[4, 5]]))
    stats = session.cache_stats()
    assert (stats.side_state_tokens, stats.kv_tokens) == (N + 2, 5)


@pytest.mark.parametrize("mechanism", ["casa", "casa_shared"])
def test_casa_decoding_writes_into_the_window_buffer_without_copying_the_image_kv(
        mechanism: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every decode step attends over a view of one preallocated window buffer per layer: the image K/V are
    written once, when the image arrives, and neither moved nor copied while the window's text grows."""
    import casa_eval.fusion.casa as casa_module

    model = FusionModel(FusionConfig(mechanism=mechanism))
    session = model.new_session()
    g = torch.Generator().manual_seed(0)
    session.add_image(torch.rand(1, 3, 64, 64, generator=g) * 2 - 1)
    session.add_text(torch.randint(0, 50_000, (1, T), generator=g))
    buffers = {i: (s.k.data_ptr(), s.v.data_ptr(), s.k[:, :, :N].clone()) for i, s in session.states.items()}
    assert len(buffers) == len(model.fusion_indices) > 0
    attended: list[tuple[int, int]] = []
    original = casa_module.stream_window_attention

    def spy(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, n_fixed: int, **kwargs: object) -> torch.Tensor:
        attended.append((k.untyped_storage().data_ptr(), v.untyped_storage().data_ptr()))
        return original(q, k, v, n_fixed, **kwargs)

    monkeypatch.setattr(casa_module, "stream_window_attention", spy)
    steps = casa_module.WINDOW_RESERVE - T  # fills the reserve exactly: no growth yet
    for step in range(steps):
        session.decode(torch.tensor([11 + step]))
    assert len(attended) == steps * len(buffers)
    storages = {(k, v) for k, v, _ in buffers.values()}
    assert set(attended) <= storages  # every step read the buffers the image was written into
    for i, state in session.states.items():
        k_ptr, v_ptr, image_k = buffers[i]
        assert (state.k.data_ptr(), state.v.data_ptr()) == (k_ptr, v_ptr)
        assert torch.equal(state.k[:, :, :N], image_k)
        assert state.length == N + T + steps
    session.decode(torch.tensor([7]))  # one more token than reserved: the buffer doubles once
    assert all(s.k.shape[2] == 2 * (N + casa_module.WINDOW_RESERVE) for s in session.states.values())
    assert session.cache_stats().side_state_bytes == session.cache_stats().analytic_side_state_bytes
