"""The small phantom model the image-learning and explain-sanity tests train through the real ``train()``:
a quarter-width ResNet-18 at 64 px with random weights and a 2-layer random BERT (``phantom-small``,
shrunk), 10 epochs at the full tower learning rate."""

from __future__ import annotations

import json
from pathlib import Path

from cxrsearch.model.config import get_config
from cxrsearch.model.train import TrainOptions, TrainResult, train

SIZE = 64


def phantom_config(root: Path, name: str) -> Path:
    """``phantom-small`` at :data:`SIZE` px with narrower towers, written to ``root/<name>.json``."""
    config = get_config("phantom-small").to_dict()
    config["name"] = name
    config["preprocess"]["image_size"] = SIZE
    config["image"]["kwargs"]["output_stride"] = 32
    config["text"]["kwargs"].update(hidden_size=32, intermediate_size=64)
    config["fusion"].update(joint_dim=32)
    path = root / f"{name}.json"
    path.write_text(json.dumps(config))
    return path


def train_on_phantoms(data: Path, images: Path, config: Path, out: Path) -> TrainResult:
    """Train ``config`` on the phantom reports in ``data`` and films in ``images``, on at most 2 threads."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, threads))
    try:
        return train(
            TrainOptions(
                data=data,
                images=images,
                config=str(config),
                out=out,
                image_encoder="random",
                epochs=10,
                batch_size=16,
                lr=3e-3,
                tower_lr_ratio=1.0,
                patience=10,
                finding_sentences=False,
                seed=0,
            )
        )
    finally:
        torch.set_num_threads(threads)
