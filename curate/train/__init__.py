"""Fine-tune a student on a published dataset (TRL SFT). Importing this stays cheap:
torch, transformers and trl are imported when `train` runs."""

from curate.train.config import LoraSettings, TrainConfig
from curate.train.trainer import TrainResult, train

__all__ = ["LoraSettings", "TrainConfig", "TrainResult", "train"]
