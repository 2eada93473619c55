"""Self-contained checkpoints: ``model.safetensors`` + ``config.json`` + ``tokenizer/``. Never unpickles.

Layout of a checkpoint directory::

    model.safetensors   every weight of the FusionModel (towers included)
    config.json         format + version, the ModelConfig (towers with their sources and revisions,
                        fusion, preprocessing), the label vocabulary (head order), per-label decision
                        thresholds, the text tower's transformers config (to rebuild it offline), the
                        training-data fingerprint, metrics, ``fingerprint`` (sha256 of
                        model.safetensors), library versions, creation time, free-form ``extra``
    tokenizer/          ``tokenizer.save_pretrained`` output

Loading needs no network and no tower source: architectures are rebuilt from ``config.json`` and
every weight comes from ``model.safetensors``. Files are written under temporary names and moved into
place one by one, ``config.json`` last; a torn write is caught by the fingerprint check on load.
Other files in the directory (e.g. a training state) are left alone.

Public API::

    save_checkpoint(directory, model, *, thresholds, data_fingerprint=None, metrics=None, extra=None)
        -> CheckpointInfo
    read_checkpoint_info(directory) -> CheckpointInfo      # config.json only: no torch, instant
    load_checkpoint(directory, device="cpu", verify=True) -> Checkpoint
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrsearch.errors import ModelError
from cxrsearch.model.config import ModelConfig

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.model.fusion import FusionModel

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
                "image": {"arch": cfg.image.arch, "source": cfg.image.source, "hub_id": cfg.image.hub_id, "revision": cfg.image.revision},
                "text": {"model_type": self.text_tower_config.get("model_type"), "source": cfg.text.source, "hub_id": cfg.text.hub_id, "revision": cfg.text.revision},
            },
            "fusion": cfg.to_dict()["fusion"],
            "preprocess": cfg.to_dict()["preprocess"],
            "data_fingerprint": self.data_fingerprint,
            "metrics": dict(self.metrics),
            "created": self.created,
            "versions": dict(self.versions),
            "extra": dict(self.extra),
        }


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model (eval mode) plus everything in :class:`CheckpointInfo`.

    ``path``, ``config``, ``labels``, ``thresholds``, ``fingerprint`` and ``metrics`` read through
    to ``info``.
    """

    info: CheckpointInfo
    model: FusionModel

    path = property(lambda self: self.info.path)
    config = property(lambda self: self.info.config)
    labels = property(lambda self: self.info.labels)
    thresholds = property(lambda self: self.info.thresholds)
    fingerprint = property(lambda self: self.info.fingerprint)
    metrics = property(lambda self: self.info.metrics)


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _thresholds_in_order(labels: tuple[str, ...], thresholds: Sequence[float] | Mapping[str, float]) -> tuple[float, ...]:
    if isinstance(thresholds, Mapping):
        missing = [label for label in labels if label not in thresholds]
        if missing or len(thresholds) != len(labels):
            raise ModelError(f"thresholds must name exactly the model's labels (missing {missing}, extra {sorted(set(thresholds) - set(labels))})")
        values = tuple(float(thresholds[label]) for label in labels)
    else:
        values = tuple(float(t) for t in thresholds)
        if len(values) != len(labels):
            raise ModelError(f"{len(values)} thresholds for {len(labels)} labels")
    if not all(0.0 <= t <= 1.0 and math.isfinite(t) for t in values):
        raise ModelError("thresholds must be probabilities in [0, 1]")
    return values


def _json_ready(value: Any, what: str) -> Any:
    try:
        return json.loads(json.dumps(value, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o), allow_nan=False))
    except ValueError as exc:
        raise ModelError(f"checkpoint {what} are not JSON-serialisable: {exc}") from None


def _versions(config: ModelConfig) -> dict[str, str]:
    """Library versions, plus the Python package a ``python-package:`` tower was read from."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    packages = [t.source_arg for t in (config.image, config.text) if t.source_kind == "python-package"]
    for name in ("cxrsearch", "torch", "timm", "transformers", "safetensors", *packages):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "unknown"
    return found


def save_checkpoint(
    directory: str | Path,
    model: FusionModel,
    *,
    thresholds: Sequence[float] | Mapping[str, float],
    data_fingerprint: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> CheckpointInfo:
    """Write ``model`` (its config, labels and tokenizer included) as a checkpoint in ``directory``.

    ``thresholds``: one probability per label (sequence in ``model.labels`` order, or a mapping by
    label name), tuned on the validation split by training. Returns the info that was written.
    """
    from safetensors.torch import save_model

    target = Path(directory).expanduser()
    target.mkdir(parents=True, exist_ok=True)
    ordered = _thresholds_in_order(model.labels, thresholds)
    weights_tmp = target / f".{WEIGHTS_FILE}.tmp-{os.getpid()}"
    # One metadata key only: safetensors writes the metadata map in hash order, so two keys would make
    # the bytes (and the fingerprint) of identical weights differ from one save to the next.
    save_model(model, str(weights_tmp), metadata={"format": "pt"}, force_contiguous=True)
    fingerprint = file_sha256(weights_tmp)
    tokenizer_tmp = Path(tempfile.mkdtemp(prefix=f".{TOKENIZER_DIR}.tmp-", dir=target))
    model.tokenizer.save_pretrained(str(tokenizer_tmp))
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model.config.to_dict(),
        "labels": list(model.labels),
        "thresholds": list(ordered),
        "fingerprint": fingerprint,
        "weights_bytes": weights_tmp.stat().st_size,
        "data_fingerprint": data_fingerprint,
        "metrics": _json_ready(dict(metrics or {}), "metrics"),
        "text_tower_config": _json_ready(model.text_tower.hf_config_dict(), "text tower config"),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(model.config),
        "extra": _json_ready(dict(extra or {}), "extra fields"),
    }
    config_tmp = target / f".{CONFIG_FILE}.tmp-{os.getpid()}"
    config_tmp.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(weights_tmp, target / WEIGHTS_FILE)
    old_tokenizer = target / TOKENIZER_DIR
    if old_tokenizer.exists():
        shutil.rmtree(old_tokenizer)
    os.replace(tokenizer_tmp, old_tokenizer)
    os.replace(config_tmp, target / CONFIG_FILE)
    return read_checkpoint_info(target)


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
        raise ModelError(f"checkpoint format version {doc.get('format_version')} is not supported (expected {FORMAT_VERSION})", path=config_path)
    try:
        labels = tuple(str(label) for label in doc["labels"])
        info = CheckpointInfo(
            path=path,
            config=ModelConfig.from_dict(doc["model"], where=config_path),
            labels=labels,
            thresholds=_thresholds_in_order(labels, doc["thresholds"]),
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


def load_checkpoint(directory: str | Path, device: str = "cpu", verify: bool = True) -> Checkpoint:
    """Rebuild the model from a checkpoint directory, offline. The model is returned in eval mode.

    ``verify``: check the sha256 of ``model.safetensors`` against ``config.json`` (about 1 s per
    500 MB); the size is always checked.
    """
    from safetensors.torch import load_model

    from cxrsearch.model.fusion import FusionModel
    from cxrsearch.model.towers import build_image_tower, text_tower_from_parts

    info = read_checkpoint_info(directory)
    weights = info.path / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelError(f"checkpoint weights {WEIGHTS_FILE} are missing", path=info.path)
    if weights.stat().st_size != info.weights_bytes or (verify and file_sha256(weights) != info.fingerprint):
        raise ModelError(f"checkpoint weights do not match {CONFIG_FILE} (truncated, replaced or torn write)", path=weights)
    tokenizer_dir = info.path / TOKENIZER_DIR
    if not tokenizer_dir.is_dir():
        raise ModelError(f"checkpoint {TOKENIZER_DIR}/ directory is missing", path=info.path)
    config = info.config
    model = FusionModel(
        config,
        info.labels,
        build_image_tower(config, pretrained=False),
        text_tower_from_parts(dict(info.text_tower_config), tokenizer_dir, config.text.pooling),
    )
    try:
        load_model(model, str(weights), strict=True, device=str(device))
    except Exception as exc:  # safetensors / torch raise several types for bad files or mismatches
        first = " ".join(str(exc).split())[:300]
        raise ModelError(f"cannot load checkpoint weights: {first}", path=weights) from None
    return Checkpoint(info=info, model=model.to(device).eval())
