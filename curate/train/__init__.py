"""Fine-tune a student on a published dataset (TRL SFT, or DPO on its preference pairs). Importing this stays cheap:
torch, transformers and trl are imported when `train` runs."""

from curate.train.config import DpoSettings, LoraSettings, TrainConfig
from curate.train.trainer import TrainResult, train

__all__ = ["DpoSettings", "LoraSettings", "TrainConfig", "TrainResult", "train"]
