"""What a checkpoint's ``config.json`` says, without loading any weight: :class:`CheckpointInfo`
and :func:`read_checkpoint_info` (instant, no torch), and the file names of the checkpoint layout
(:mod:`cxrsearch.model.checkpoint` saves and loads; the torch-free runtimes
:mod:`cxrsearch.model.numpy_text` and :mod:`cxrsearch.model.onnx_image` read only this).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxrsearch.errors import ModelError
from cxrsearch.model.config import ModelConfig

FORMAT = "cxrsearch-checkpoint"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_DIR = "tokenizer"


@dataclass(frozen=True)
class CheckpointInfo:
    """What ``config.json`` says about a checkpoint (no weights loaded).

    Attributes:
        path: the checkpoint directory.
        config: the :class:`ModelConfig` (architecture, tower sources/revisions, preprocessing).
        labels: label names in head order (``logits[:, i]`` is ``labels[i]``).
        thresholds: per-label decision thresholds on probabilities, same order as ``labels``.
        fingerprint: sha256 (hex) of ``model.safetensors``: identifies the weights.
        weights_bytes: size of ``model.safetensors``.
        data_fingerprint: fingerprint of the training data (set by training), or ``None``.
        metrics: JSON metrics recorded by training (validation AUROC, ...).
        text_tower_config: the text backbone's transformers config (``model_type`` included).
        created: ISO-8601 UTC time of saving.
        versions: library versions at saving time.
        extra: free-form JSON from the caller (training settings, epoch, ...).
    """

    path: Path
    config: ModelConfig
    labels: tuple[str, ...]
    thresholds: tuple[float, ...]
    fingerprint: str
    weights_bytes: int
    data_fingerprint: str | None
    metrics: Mapping[str, Any]
    text_tower_config: Mapping[str, Any]
    created: str
    versions: Mapping[str, str]
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def trained_modalities(self) -> tuple[str, ...] | None:
        """What training taught the model: ``("text",)`` or ``("image", "text")``; ``None`` when the
        checkpoint has no training record (an untrained baseline, an older checkpoint).

        The image side counts as trained when training saw radiographs (``n_train_with_images``) and
        the image tower was either trained or pretrained: a random tower frozen during training
        (``--image-encoder random --freeze-encoders``, the demo's set-up) gives random image features."""
        if "n_train_with_images" not in self.metrics:
            return None
        training = self.extra.get("training") or {}
        random_frozen = self.config.image.source == "random" and bool(training.get("freeze_encoders"))
        if int(self.metrics["n_train_with_images"]) > 0 and not random_frozen:
            return ("image", "text")
        return ("text",)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (what ``cxrsearch models info --json`` prints)."""
        cfg = self.config
        return {
            "path": str(self.path),
            "model": cfg.name,
            "fingerprint": self.fingerprint,
            "weights_bytes": self.weights_bytes,
            "joint_dim": cfg.fusion.joint_dim,
            "labels": list(self.labels),
            "thresholds": dict(zip(self.labels, self.thresholds)),
            "towers": {
                "image": {
                    "arch": cfg.image.arch,
                    "source": cfg.image.source,
                    "hub_id": cfg.image.hub_id,
                    "revision": cfg.image.revision,
                },
                "text": {
                    "model_type": self.text_tower_config.get("model_type"),
                    "source": cfg.text.source,
                    "hub_id": cfg.text.hub_id,
                    "revision": cfg.text.revision,
                },
            },
            "fusion": cfg.to_dict()["fusion"],
            "preprocess": cfg.to_dict()["preprocess"],
            "data_fingerprint": self.data_fingerprint,
            "trained_modalities": None if self.trained_modalities is None else list(self.trained_modalities),
            "metrics": dict(self.metrics),
            "created": self.created,
            "versions": dict(self.versions),
            "extra": dict(self.extra),
        }


def thresholds_in_order(
    labels: tuple[str, ...], thresholds: Sequence[float] | Mapping[str, float]
) -> tuple[float, ...]:
    """Per-label thresholds (a list in head order, or a mapping by label name) as a tuple in head
    order; ModelError unless there is one probability per label."""
    if isinstance(thresholds, Mapping):
        missing = [label for label in labels if label not in thresholds]
        if missing or len(thresholds) != len(labels):
            raise ModelError(
                "thresholds must name exactly the model's labels "
                f"(missing {missing}, extra {sorted(set(thresholds) - set(labels))})"
            )
        values = tuple(float(thresholds[label]) for label in labels)
    else:
        values = tuple(float(t) for t in thresholds)
        if len(values) != len(labels):
            raise ModelError(f"{len(values)} thresholds for {len(labels)} labels")
    if not all(0.0 <= t <= 1.0 and math.isfinite(t) for t in values):
        raise ModelError("thresholds must be probabilities in [0, 1]")
    return values


def read_checkpoint_info(directory: str | Path) -> CheckpointInfo:
    """Parse ``config.json`` of a checkpoint (fast; imports no torch)."""
    path = Path(directory).expanduser()
    config_path = path / CONFIG_FILE
    if not path.is_dir():
        raise ModelError("checkpoint directory not found", path=path)
    if not config_path.is_file():
        raise ModelError(f"not a checkpoint: {CONFIG_FILE} is missing", path=path)
    try:
        doc = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"corrupt checkpoint config: {exc}", path=config_path) from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelError(f"not a cxrsearch checkpoint (format is not {FORMAT!r})", path=config_path)
    if doc.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"checkpoint format version {doc.get('format_version')} is not supported (expected {FORMAT_VERSION})",
            path=config_path,
        )
    try:
        labels = tuple(str(label) for label in doc["labels"])
        info = CheckpointInfo(
            path=path,
            config=ModelConfig.from_dict(doc["model"], where=config_path),
            labels=labels,
            thresholds=thresholds_in_order(labels, doc["thresholds"]),
            fingerprint=str(doc["fingerprint"]),
            weights_bytes=int(doc["weights_bytes"]),
            data_fingerprint=doc.get("data_fingerprint"),
            metrics=dict(doc.get("metrics") or {}),
            text_tower_config=dict(doc["text_tower_config"]),
            created=str(doc.get("created", "")),
            versions=dict(doc.get("versions") or {}),
            extra=dict(doc.get("extra") or {}),
        )
    except ModelError as exc:
        raise ModelError(exc.message, path=config_path) from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"corrupt checkpoint config: {type(exc).__name__}: {exc}", path=config_path) from None
    return info
