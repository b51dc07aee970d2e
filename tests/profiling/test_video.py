"""Frames from a real (synthesised) video file, decoded with PyAV at the profile's frame rate."""

from __future__ import annotations

from pathlib import Path

from casa_eval.profiling.runner import profile_models
from casa_eval.profiling.video import read_frames, synthesize_video
from tests.profiling.helpers import tiny_profile


def test_video_is_sampled_at_the_profile_fps(tmp_path: Path) -> None:
    video = synthesize_video(tmp_path / "clip.mp4", seconds=3, fps=10, size=96)
    frames = list(read_frames(video, fps=2, size=32))
    assert len(frames) == 6  # 3 s at 2 fps
    assert frames[0].shape == (32, 32, 3) and frames[0].dtype.name == "uint8"
    assert not (frames[0] == frames[-1]).all()  # the content moves


def test_profile_streams_the_video_frames(tmp_path: Path) -> None:
    video = synthesize_video(tmp_path / "clip.mp4", seconds=2, fps=10, size=64)
    section = profile_models(tiny_profile(), ["zoo-casa"], video=video)
    assert section.video == str(video)
    assert len([r for r in section.records if r.model == "zoo-casa"]) == 4
