"""A local stand-in for the hub datasets of the casa-paper tasks: a few rows of each, with the columns the
real datasets have, written in the hub's parquet layout (`MIRROR/<repo>/<config>/<split>-00000-of-00001.parquet`)
so `casa-eval data pull` can be exercised offline through `CASA_EVAL_HUB_MIRROR`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw


def _image(text: str, size: int = 96) -> Image.Image:
    image = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(image).text((6, size // 2 - 6), text, fill="black")
    return image


def mirror_rows(rows: int = 4) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """(repo, config, split) -> rows, for every dataset the nine casa-paper tasks read."""
    pairs = max(1, rows // 2)
    return {
        ("lmms-lab-encoder/ChartQA", "default", "test"): [
            {"type": "human_test" if i % 2 else "augmented_test", "question": f"What is the value of bar {i}?",
             "answer": str(10 + i), "image": _image(f"bar {10 + i}")} for i in range(rows)],
        ("lmms-lab-encoder/DocVQA", "DocVQA", "validation"): [
            {"questionId": str(1000 + i), "question": f"What is the invoice number {i}?",
             "answers": [f"INV-{i}", f"inv {i}"], "image": _image(f"INV-{i}")} for i in range(rows)],
        ("lmms-lab-encoder/DocVQA", "InfographicVQA", "validation"): [
            {"questionId": str(2000 + i), "question": f"How many people in panel {i}?", "answers": [str(3 * i)],
             "image": _image(str(3 * i))} for i in range(rows)],
        ("echo840/OCRBench", "default", "test"): [
            {"dataset": "IIIT5K", "question": "what is written in the image?",
             "question_type": "Regular Text Recognition", "answer": [f"word{i}"],
             "image": _image(f"word{i}")} for i in range(rows)],
        ("lmms-lab-encoder/textvqa", "default", "validation"): [
            {"question_id": i, "question": f"what brand is shown {i}?", "answers": [f"brand{i}"] * 10,
             "image": _image(f"brand{i}")} for i in range(rows)],
        ("lmms-lab-encoder/RealWorldQA", "default", "test"): [
            {"question": f"Which way is the car {i} going?\nA. left\nB. right\nPlease answer directly with only "
                         "the letter of the correct option and nothing else.", "answer": "A" if i % 2 else "B",
             "image": _image(f"car {i}")} for i in range(rows)],
        ("lmms-lab-encoder/ai2d", "default", "test"): [
            {"question": f"Which stage comes after stage {i}", "options": ["egg", "larva", "pupa", "adult"],
             "answer": str(i % 4), "image": _image(f"stage {i}")} for i in range(rows)],
        ("lmms-lab-encoder/GQA", "testdev_balanced_instructions", "testdev"): [
            {"id": f"q{i}", "imageId": f"img{i % 2}", "question": f"What color is object {i}?",
             "answer": "red" if i % 2 else "blue"} for i in range(rows)],
        ("lmms-lab-encoder/GQA", "testdev_balanced_images", "testdev"): [
            {"id": f"img{j}", "image": _image(f"img {j}")} for j in range(2)],
        ("lmms-lab-encoder/MME", "default", "test"): [
            {"question_id": f"artwork/{p}.jpg", "question": f"Is this painting {p} by Monet? Please answer yes or no.",
             "answer": "Yes" if k == 0 else "No", "category": "artwork", "image": _image(f"art {p}")}
            for p in range(pairs) for k in range(2)],
    }


def build_mirror(root: Path, rows: int = 4) -> Path:
    import datasets

    for (repo, config, split), records in mirror_rows(rows).items():
        folder = root / repo / config
        folder.mkdir(parents=True, exist_ok=True)
        features = None
        if "image" in records[0]:
            features = datasets.Dataset.from_list(records).features
            features["image"] = datasets.Image()
        datasets.Dataset.from_list(records, features=features).to_parquet(
            str(folder / f"{split}-00000-of-00001.parquet"))
    return root
