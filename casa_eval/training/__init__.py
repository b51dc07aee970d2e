"""The fusion lab's training room: `casa-eval train` trains zoo mechanisms under identical conditions and
writes checkpoints plus training records that `casa-eval run`, the report and the gate read.

Public API::

    settings = TrainSettings(mechanisms=["casa", "insertion"], steps=200, seeds=[0])
    records = train(settings, Path("lab-out"))        # lab-out/seed0/lab-casa/ ...
"""

from casa_eval.training.loop import SETTINGS_FILE, lab_name, model_dir, train
from casa_eval.training.record import RECORD_FILE, TrainingRecord, load_record
from casa_eval.training.settings import LAB_MODEL, TrainSettings

__all__ = ["LAB_MODEL", "RECORD_FILE", "SETTINGS_FILE", "TrainSettings", "TrainingRecord", "lab_name",
           "load_record", "model_dir", "train"]
