"""`python -m curate.train CONFIG.yaml [FIELD=VALUE ...]`: the entry point for several GPUs,

    accelerate launch -m curate.train recipes/quickstart.yaml output_dir=students/v1

CONFIG.yaml is a recipe (its `train:` section is used) or a bare train section. Each
FIELD=VALUE overrides one field; VALUE is YAML, nested fields use dots (lora.r=32).
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from curate.core.overrides import OverrideError, apply_overrides
from curate.train.config import TrainConfig


def load_train_config(path: Path, overrides: list[str]) -> TrainConfig:
    document = yaml.safe_load(Path(path).read_text()) or {}
    section = document.get("train", document) if isinstance(document, dict) else None
    if not isinstance(section, dict):
        raise SystemExit(f"{path}: expected a mapping (a recipe with a 'train:' section, or the section itself)")
    try:
        apply_overrides(section, overrides)
    except OverrideError as error:
        raise SystemExit(f"override {error}") from None
    return TrainConfig.model_validate(section)


def main(argv: list[str]) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    from curate.train.trainer import train

    result = train(load_train_config(Path(argv[0]), argv[1:]))
    print(f"trained {result.steps} steps, loss {result.train_loss:.4f}, "
          f"{result.tokens_per_second:.1f} tokens/s; model in {result.model_dir}")


if __name__ == "__main__":
    main(sys.argv[1:])
