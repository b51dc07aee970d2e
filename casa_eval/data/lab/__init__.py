"""The lab tasks (`tasks/lab/*.yaml`): generated visual questions that isolate fine-grained detail, the image
as a whole, and recall of an earlier image — see `casa_eval.data.lab.tasks`."""

from casa_eval.data.lab.tasks import (
    CHANCE,
    COLOUR_NAMES,
    IMAGE,
    LAB_TASKS,
    LabItem,
    LabTask,
    held_out,
    held_out_keys,
    make_item,
    render,
    train_items,
)

__all__ = [
    "CHANCE",
    "COLOUR_NAMES",
    "IMAGE",
    "LAB_TASKS",
    "LabItem",
    "LabTask",
    "held_out",
    "held_out_keys",
    "make_item",
    "render",
    "train_items",
]
