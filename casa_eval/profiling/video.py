"""Frames for streaming profiles: decoded from a video file with PyAV at the profile's frame rate, or a
short video synthesised offline (moving shapes and a frame counter) for tests and the default demo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def synthesize_video(path: Path, *, seconds: float = 8.0, fps: int = 10, size: int = 256) -> Path:
    """Write an H.264 MP4 of moving shapes (deterministic) and return its path."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    frames = int(seconds * fps)
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"g": str(fps)})
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            picture = av.VideoFrame.from_ndarray(_frame(i, frames, size), format="rgb24")
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)
    return path


def _frame(i: int, total: int, size: int) -> np.ndarray:
    image = Image.new("RGB", (size, size), (20 + 200 * i // total, 40, 80))
    draw = ImageDraw.Draw(image)
    t = i / max(total - 1, 1)
    x, y = int(t * (size - 60)), int((0.5 + 0.4 * np.sin(6.28 * t)) * (size - 60))
    draw.ellipse((x, y, x + 60, y + 60), fill=(240, 200, 40))
    draw.rectangle((size - x - 50, size // 3, size - x, size // 3 + 50), fill=(60, 200, 120))
    draw.text((8, 8), f"frame {i}", fill=(255, 255, 255))
    return np.asarray(image)


def read_frames(path: Path, *, fps: float, size: int) -> Iterator[np.ndarray]:
    """Decode `path`, keep one frame every 1/fps seconds of stream time, resized to size x size (RGB uint8)."""
    import av

    next_time = 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            if frame.time is None or frame.time + 1e-6 < next_time:
                continue
            next_time += 1.0 / fps
            yield frame.to_ndarray(width=size, height=size, format="rgb24")


def demo_video() -> Path:
    """The default demo clip (8 s at 10 fps, 256 px), synthesised once into casa-eval's cache."""
    from casa_eval._paths import cache_dir

    path = cache_dir() / "videos" / "demo-v1.mp4"
    return path if path.is_file() else synthesize_video(path)


def synthetic_frames(count: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Frames without a video file (used when a profile runs with no --video)."""
    total = max(count, 2)
    return [_frame(i, total, size) for i in range(count)]
