"""What training reads: the train and val splits of the Open-i studies, as aligned arrays.

Splits are study-level and come from the data layer (``Study.split``); the **test split is never
loaded** here. Each study becomes one sample with

- ``text``: ``Study.report_text()`` (findings + impression), or ``None`` when the report has neither;
- ``images``: the paths of its radiographs found under ``--images`` (paired by Open-i image id with
  :func:`cxrsearch.data.pairing.index_images`), possibly none;
- ``targets``: one 0/1 per vocabulary label (:func:`cxrsearch.data.labels.label_names` order).

A study with neither text nor image cannot be trained on and is counted in ``skipped``.

**Finding sentences** (``sentences=True``, ``cxrsearch train --finding-sentences``): people search
with short phrases, while every training text is a whole report, and most reports name findings
only to deny them ("No pneumothorax or effusion"): a model trained on whole reports alone reads
"pulmonary edema" as a normal report. So each train report's sentences that *affirm* one of the
study's own labels, by that label's vocabulary words (its name and its MeSH headings in
labels.json, outside a negation's scope as :func:`cxrsearch.text.bm25.mark_negations` marks it),
are added as text-only samples whose targets are those labels. Val stays whole reports.

The **data fingerprint** (saved in the checkpoint) is a sha256 over the label vocabulary and, per
sample in order, the uid, split, text, label set and paired image ids with their file sizes: two runs
with the same fingerprint trained on the same inputs.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cxrsearch.data.labels import label_keywords, label_names, word_stem
from cxrsearch.data.openi import load_studies
from cxrsearch.data.pairing import index_images
from cxrsearch.errors import ConfigError
from cxrsearch.text.bm25 import mark_negations
from cxrsearch.text.report import normalise_report


@dataclass(frozen=True)
class SplitData:
    """The ``N`` samples of one split, aligned by index.

    Attributes:
        uids: study ids (``"CXR3029"``).
        texts: report texts, ``None`` where the report is empty.
        images: per study, its paired image files (empty tuple when none was found).
        targets: ``[N, L]`` float32 0/1 label matrix.
        label_sets: per study, its labels (the "label-identical" key of the contrastive loss).
        text_keys: per study, :func:`normalise_report` of its text (the "identical report" key).
    """

    uids: tuple[str, ...]
    texts: tuple[str | None, ...]
    images: tuple[tuple[Path, ...], ...]
    targets: np.ndarray
    label_sets: tuple[tuple[str, ...], ...]
    text_keys: tuple[str | None, ...]

    def __len__(self) -> int:
        return len(self.uids)

    @property
    def n_with_images(self) -> int:
        return sum(1 for paths in self.images if paths)


@dataclass(frozen=True)
class TrainingData:
    """Train + val samples, the label vocabulary and the data fingerprint.

    ``skipped``: studies (train or val) with neither report text nor a paired image.
    ``images_indexed``: image files found under ``--images`` (0 without ``--images``).
    """

    labels: tuple[str, ...]
    train: SplitData
    val: SplitData
    skipped: int
    images_indexed: int
    fingerprint: str
    source: str


def _split_data(rows: list[tuple], labels: tuple[str, ...]) -> SplitData:
    index = {name: j for j, name in enumerate(labels)}
    targets = np.zeros((len(rows), len(labels)), dtype=np.float32)
    for i, (_, _, _, study_labels) in enumerate(rows):
        for name in study_labels:
            targets[i, index[name]] = 1.0
    return SplitData(
        uids=tuple(r[0] for r in rows),
        texts=tuple(r[1] for r in rows),
        images=tuple(r[2] for r in rows),
        targets=targets,
        label_sets=tuple(tuple(sorted(r[3])) for r in rows),
        text_keys=tuple(normalise_report(r[1]) for r in rows),
    )


def finding_sentences(
    text: str | None, study_labels: tuple[str, ...], keywords: dict[str, tuple[frozenset[str], ...]]
) -> list[tuple[str, tuple[str, ...]]]:
    """``(sentence, labels it affirms)`` for each sentence of ``text`` naming one of ``study_labels``
    outside a negation (see the module docstring); ``normal`` is never affirmed by a sentence."""
    out = []
    for sentence in re.split(r"(?<=[.;])\s+", text or ""):
        words = {word_stem(w) for w in mark_negations(sentence).split()}  # negated words carry a "no" prefix
        affirmed = tuple(
            label
            for label in study_labels
            if label != "normal" and any(need <= words for need in keywords.get(label, ()))
        )
        if affirmed:
            out.append((sentence.strip(), affirmed))
    return out


def with_finding_sentences(
    texts: list[str | None], label_sets: list[tuple[str, ...]]
) -> tuple[list[str | None], list[tuple[str, ...]]]:
    """``texts`` and ``label_sets`` followed by every text's finding sentences and their labels (what
    training with finding sentences reads; baselines get the same data)."""
    keywords = label_keywords()
    out_texts, out_labels = list(texts), list(label_sets)
    for text, labels in zip(texts, label_sets):
        for sentence, affirmed in finding_sentences(text, tuple(labels), keywords):
            out_texts.append(sentence)
            out_labels.append(affirmed)
    return out_texts, out_labels


def load_training_data(
    data: str | Path, images_dir: str | Path | None = None, limit: int | None = None, sentences: bool = False
) -> TrainingData:
    """Train and val samples of the Open-i reports at ``data`` (tgz, XML folder or data folder).

    ``images_dir``: pair radiographs found there (recursively) with their reports. ``limit``: keep
    only the first ``limit`` train+val studies in report-number order (quick runs and tests).
    ``sentences``: add the train reports' finding sentences (see the module docstring).
    """

    if limit is not None and limit < 2:
        raise ConfigError(f"--limit must be >= 2, got {limit}")
    labels = tuple(label_names())
    index: dict = {}
    if images_dir is not None:
        index = index_images(images_dir)
    studies = [s for s in load_studies(data) if s.split in ("train", "val")]
    if limit is not None:
        studies = studies[:limit]
    rows: dict[str, list[tuple]] = {"train": [], "val": []}
    keywords = label_keywords() if sentences else {}
    digest = hashlib.sha256(json.dumps(labels).encode())
    skipped = 0
    for study in studies:
        text = study.report_text() or None
        images = tuple(Path(index[i]) for i in study.image_ids if i in index)
        if text is None and not images:
            skipped += 1
            continue
        unknown = set(study.labels) - set(labels)
        if unknown:
            raise ConfigError(
                f"study {study.uid} has labels outside the vocabulary: {sorted(unknown)}", path=study.source
            )
        rows[study.split].append((study.uid, text, images, study.labels))
        record = [study.uid, study.split, text, sorted(study.labels), [[p.name, p.stat().st_size] for p in images]]
        digest.update(json.dumps(record, ensure_ascii=False).encode())
        if sentences and study.split == "train":
            for n, (sentence, affirmed) in enumerate(finding_sentences(text, study.labels, keywords)):
                rows["train"].append((f"{study.uid}#s{n}", sentence, (), affirmed))
                digest.update(json.dumps([f"{study.uid}#s{n}", sentence, list(affirmed)]).encode())
    for split in ("train", "val"):
        if len(rows[split]) < 2:
            raise ConfigError(
                f"the {split} split has {len(rows[split])} usable studies; "
                "training needs at least 2 (is --limit too small?)",
                path=data,
            )
    return TrainingData(
        labels=labels,
        train=_split_data(rows["train"], labels),
        val=_split_data(rows["val"], labels),
        skipped=skipped,
        images_indexed=len(index),
        fingerprint=digest.hexdigest(),
        source=str(data),
    )
