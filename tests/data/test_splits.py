"""The deterministic, study-level train/val/test split."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from cxrsearch.data.openi import load_studies
from cxrsearch.data.pairing import uid_of_image
from cxrsearch.data.splits import SPLITS, split_bucket, split_of


def test_pinned_assignments_never_change() -> None:
    # Changing these invalidates every trained model's test metrics: see cxrsearch/data/splits.py.
    assert {uid: split_of(uid) for uid in ("CXR1", "CXR2", "CXR10", "CXR3029")} == {
        "CXR1": "train",
        "CXR2": "test",
        "CXR10": "test",
        "CXR3029": "test",
    }
    assert split_bucket("CXR10") >= 90


def test_same_split_in_a_fresh_interpreter_with_another_hash_seed() -> None:
    uids = [f"CXR{n}" for n in range(1, 200)]
    code = "import sys; from cxrsearch.data.splits import split_of; print(','.join(split_of(u) for u in sys.argv[1:]))"
    out = subprocess.run(
        [sys.executable, "-c", code, *uids],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout.strip()
    assert out.split(",") == [split_of(u) for u in uids]


def test_real_split_sizes_are_80_10_10(reports_tgz: Path) -> None:
    studies = load_studies(reports_tgz)
    sizes = Counter(s.split for s in studies)
    assert set(sizes) == set(SPLITS)
    assert sizes == {"train": 3193, "val": 382, "test": 380}
    for name, share in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        assert abs(sizes[name] / len(studies) - share) < 0.02


def test_all_images_of_a_study_share_its_split(reports_tgz: Path) -> None:
    for study in load_studies(reports_tgz):
        assert study.split == split_of(study.uid)
        assert {split_of(uid_of_image(image_id)) for image_id in study.image_ids} <= {study.split}
