"""A deterministic, study-level train/val/test split.

The split of a study depends only on its uid (``"CXR3029"``): the first 8 bytes of
``sha256("cxrsearch-split-v1:" + uid)``, read as a big-endian integer, modulo 100 give a bucket;
buckets 0-79 are ``train``, 80-89 ``val`` and 90-99 ``test``. So the split

- is the same on every machine, Python version and run (no ``hash()`` randomisation, no RNG state);
- never changes when studies are added or removed (unlike a shuffled split);
- is shared by all images of a study (images are assigned through their study's uid), so no patient
  study leaks between train and test.

Changing the scheme would silently invalidate every trained model's test metrics; the
``v1`` in the salt exists so a future scheme can be introduced under a new name instead.
"""

from __future__ import annotations

import hashlib

SPLITS = ("train", "val", "test")
_SALT = "cxrsearch-split-v1:"


def split_bucket(uid: str) -> int:
    """The stable bucket (0-99) of a study uid."""
    digest = hashlib.sha256((_SALT + uid).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100


def split_of(uid: str) -> str:
    """``"train"`` (80 %), ``"val"`` (10 %) or ``"test"`` (10 %) for a study uid such as ``"CXR3029"``."""
    bucket = split_bucket(uid)
    if bucket < 80:
        return "train"
    if bucket < 90:
        return "val"
    return "test"
