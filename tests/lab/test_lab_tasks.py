"""The lab tasks: generated from a seed, the same everywhere, disjoint train and test splits, answers that are
what the images show, and a tokenizer in which every cell and colour is one token."""

from __future__ import annotations

import numpy as np
import pytest

from casa_eval.data.lab import CHANCE, COLOUR_NAMES, IMAGE, LAB_TASKS, held_out, held_out_keys, make_item, render
from casa_eval.data.lab.tasks import COLOURS, GLYPH_PX, GRID, MOSAIC, train_items
from casa_eval.fusion.tokenizer import build_lab_tokenizer, lab_tokenizer


def _colour_at(image: np.ndarray, top: int, left: int, size: int) -> str:
    patch = image[top:top + size, left:left + size].reshape(-1, 3)
    for name, rgb in COLOURS:
        if (patch == rgb).all(1).sum() * 2 > len(patch):
            return name
    return "?"


@pytest.mark.parametrize("task", [t for t in LAB_TASKS if t.startswith("lab_fine")])
def test_fine_grained_answer_is_the_named_cells_glyph(task: str) -> None:
    side = GLYPH_PX[LAB_TASKS[task].difficulty or 1]
    cell = 32 // GRID
    for item in held_out(task, n=20):
        address = item.text.rsplit(" ", 1)[1]
        row, col = "ABCD".index(address[0]), int(address[1]) - 1
        offset = (cell - side) // 2
        assert _colour_at(render(item.images[0]), row * cell + offset, col * cell + offset, side) == item.answer


def test_coarse_and_recall_answers_are_the_main_colours() -> None:
    for item in held_out("lab_coarse", n=20):
        cells = np.asarray(item.images[0]["colours"])
        assert COLOUR_NAMES[int(np.bincount(cells, minlength=8).argmax())] == item.answer
        assert np.bincount(cells).max() >= 0.4 * MOSAIC * MOSAIC
    for item in held_out("lab_recall", n=20):
        assert item.text.count(IMAGE) == 3
        asked = "ABC".index(item.text.rsplit(" ", 1)[1])
        assert asked < 2  # always an earlier image
        cells = np.asarray(item.images[asked]["colours"])
        assert COLOUR_NAMES[int(np.bincount(cells, minlength=8).argmax())] == item.answer


def test_splits_are_fixed_and_disjoint() -> None:
    for task in LAB_TASKS:
        assert [i.key() for i in held_out(task)] == [i.key() for i in held_out(task)]
        assert len({i.key() for i in held_out(task)}) == 200
    exclude = held_out_keys()
    test = held_out("lab_coarse")
    # a training stream told to exclude a test item never yields it, and is the same for the same (seed, step)
    first = list(train_items("lab_coarse", seed=0, step=3, count=8, exclude=frozenset({test[0].key()})))
    again = list(train_items("lab_coarse", seed=0, step=3, count=8, exclude=exclude))
    assert [i.key() for i in first] == [i.key() for i in again]
    assert not {i.key() for i in first} & exclude


def test_answers_are_balanced_so_chance_is_one_in_eight() -> None:
    assert CHANCE == 1 / len(COLOUR_NAMES) == 0.125
    for task in LAB_TASKS:
        counts = np.bincount([COLOUR_NAMES.index(i.answer) for i in held_out(task)], minlength=8)
        assert counts.max() <= 45 and counts.min() >= 10, (task, counts)  # no colour a guesser could bet on


def test_the_lab_tokenizer_keeps_cells_colours_and_labels_whole() -> None:
    tok = lab_tokenizer()
    assert len(tok) <= 512
    for text in ["colour B3", "colour", " red", " purple", "image C colour A"]:
        ids = tok(text, add_special_tokens=False).input_ids
        assert len(ids) == len(text.split()), text
    assert tok.decode(tok(" Héllo wörld 42!", add_special_tokens=False).input_ids) == " Héllo wörld 42!"


def test_the_shipped_tokenizer_is_what_the_corpus_builds() -> None:
    from casa_eval.data.lab.tasks import tokenizer_corpus

    assert build_lab_tokenizer(tokenizer_corpus()).backend_tokenizer.to_str() == \
        lab_tokenizer().backend_tokenizer.to_str()


def test_items_depend_only_on_the_generator() -> None:
    a = make_item("lab_fine_2", np.random.default_rng(5))
    b = make_item("lab_fine_2", np.random.default_rng(5))
    assert a == b and (render(a.images[0]) == render(b.images[0])).all()
