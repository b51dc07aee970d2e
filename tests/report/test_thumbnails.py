"""Thumbnails of the documents shown next to predictions: files on disk and lab items drawn from their spec."""

import base64
import io

import numpy as np
from PIL import Image

from casa_eval.data.lab.tasks import held_out, render
from casa_eval.report.views import ThumbnailStore


def _decode(uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_a_recall_item_is_drawn_side_by_side_with_its_pixels_intact() -> None:
    item = held_out("lab_recall", 1, seed=0)[0]
    store = ThumbnailStore(size=96)
    specs = item.to_doc()["images"]
    key = store.add_drawn(specs)
    assert key is not None and store.add_drawn(specs) == key and len(store.images) == 1
    strip = np.asarray(_decode(store.images[key]).convert("RGB"))
    first = render(item.images[0])
    scale = 96 // first.shape[0]
    assert strip.shape[0] == first.shape[0] * scale
    assert strip.shape[1] == len(item.images) * (first.shape[1] * scale + 2) - 2
    assert np.array_equal(strip[::scale, : first.shape[1] * scale : scale], first)  # nearest-neighbour, lossless


def test_a_file_is_shrunk_and_a_missing_one_or_bad_spec_gives_none(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "page.png"
    Image.new("RGB", (400, 200), "white").save(path)
    store = ThumbnailStore(size=96)
    key = store.add(str(path))
    assert key is not None and max(_decode(store.images[key]).size) == 96
    assert store.add(str(tmp_path / "gone.png")) is None
    assert store.add_drawn("not json") is None and store.add_drawn("[]") is None
