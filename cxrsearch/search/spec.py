"""What a user asks: :class:`QuerySpec` (a query text, image or example case, label/view/split filters, k).

Building a spec checks and normalises every field, so a typo gives one line listing what is valid
instead of an empty result: labels compare case- and space-insensitively against the vocabulary
(``"Pleural  Effusion"`` -> ``"pleural effusion"``), views upper-case (``lateral`` -> ``LATERAL``),
splits lower-case; an example id may be written ``CXR3029``, ``cxr3029`` or ``3029``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from cxrsearch.data.labels import label_names
from cxrsearch.data.splits import SPLITS
from cxrsearch.defaults import VIEWS
from cxrsearch.errors import QueryError
from cxrsearch.store.base import Filter

MAX_K = 1000
MODES = ("text", "image", "text+image", "like")
_STUDY = re.compile(r"(?i)(?:cxr)?(\d+)")
_IMAGE = re.compile(r"(?i)cxr(\d+(?:_\d+)?_im-\d+(?:-\d+)+)")


@dataclass(frozen=True)
class QuerySpec:
    """One search.

    Attributes:
        text: a free-text query ("enlarged heart"), read like a report.
        image: a radiograph file (DICOM, PNG, JPEG), decoded and preprocessed as at indexing.
        like: an indexed case: a point id (UUID), an image id (``CXR3029_IM-1404-1001``) or a study
            id (``CXR3029``; its first point). Cannot be combined with ``text``/``image``.
        all_labels / any_labels / not_labels: every / at least one / none of these labels.
        view: ``"PA"``, ``"AP"`` or ``"LATERAL"``; split: ``"train"``, ``"val"`` or ``"test"``.
        truth: filter on ``labels_true`` (MeSH-derived) instead of the predicted ``labels``.
        k: number of hits (1..1000).
        vocabulary: the label names the filters are checked against: the collection's (its
            checkpoint's, :func:`cxrsearch.search.vocabulary.collection_labels`); ``None``: the
            packaged vocabulary. ``search`` re-checks a spec against the collection it searches.
    """

    text: str | None = None
    image: Path | None = None
    like: str | None = None
    all_labels: tuple[str, ...] = field(default_factory=tuple)
    any_labels: tuple[str, ...] = field(default_factory=tuple)
    not_labels: tuple[str, ...] = field(default_factory=tuple)
    view: str | None = None
    split: str | None = None
    truth: bool = False
    k: int = 10
    vocabulary: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        text, image, like = normalise_query(self.text, self.image, self.like)
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "image", image)
        object.__setattr__(self, "like", like)
        if like is not None and (text is not None or self.image is not None):
            raise QueryError("--like searches by an indexed case; it cannot be combined with --text or --image")
        if like is None and text is None and self.image is None:
            raise QueryError("nothing to search for: give --text, --image (or both), or --like ID")
        for name in ("all_labels", "any_labels", "not_labels"):
            object.__setattr__(self, name, normalise_labels(getattr(self, name), name, self.vocabulary))
        object.__setattr__(self, "view", normalise_view(self.view))
        object.__setattr__(self, "split", normalise_split(self.split))
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise QueryError(f"-k must be an integer from 1 to {MAX_K}, got {self.k!r}")
        self.filter()  # the store's own checks (e.g. a label both required and excluded)

    @property
    def mode(self) -> str:
        """``"text"``, ``"image"``, ``"text+image"`` or ``"like"`` (see docs/search.md)."""
        if self.like is not None:
            return "like"
        if self.text is not None and self.image is not None:
            return "text+image"
        return "text" if self.text is not None else "image"

    def filter(self, exclude_study_ids: tuple[str, ...] = ()) -> Filter:
        """The store filter these fields mean (plus studies to leave out)."""
        return Filter(
            all_labels=self.all_labels,
            any_labels=self.any_labels,
            not_labels=self.not_labels,
            view=self.view,
            split=self.split,
            truth=self.truth,
            exclude_study_ids=exclude_study_ids,
        )


def normalise_query(
    text: str | None, image: Path | str | None, like: str | None
) -> tuple[str | None, Path | None, str | None]:
    """The query inputs shared by ``search`` and ``explain``: whitespace-collapsed text, a user-expanded
    image path and a stripped ``--like`` id; an option given but empty is a ``QueryError``."""
    clean_text = None if text is None else " ".join(str(text).split()) or None
    if text is not None and clean_text is None:
        raise QueryError("--text is empty")
    clean_like = None if like is None else str(like).strip() or None
    if like is not None and clean_like is None:
        raise QueryError("--like is empty")
    return clean_text, None if image is None else Path(image).expanduser(), clean_like


def _key(text: str) -> str:
    return " ".join(str(text).split()).casefold()


def normalise_labels(
    values: tuple[str, ...] | list[str], what: str = "labels", vocabulary: tuple[str, ...] | None = None
) -> tuple[str, ...]:
    """Names of ``vocabulary`` (default: the packaged one) for ``values`` (deduplicated, in the order
    given); QueryError lists the valid ones."""

    if isinstance(values, str):
        raise QueryError(f"{what} must be a list of label names, not the string {values!r}")
    names = tuple(label_names()) if vocabulary is None else tuple(vocabulary)
    known = {_key(name): name for name in names}
    out: list[str] = []
    for value in values:
        name = known.get(_key(value))
        if name is None:
            raise QueryError(f"unknown label {value!r}; valid labels: {', '.join(names)}")
        if name not in out:
            out.append(name)
    return tuple(out)


def normalise_view(value: str | None) -> str | None:

    return _one_of(value, VIEWS, "view", str.upper)


def normalise_split(value: str | None) -> str | None:

    return _one_of(value, SPLITS, "split", str.lower)


def _one_of(value: str | None, valid: tuple[str, ...], what: str, case) -> str | None:
    """``value`` stripped and case-folded by ``case``, if it is one of ``valid``; ``None`` stays ``None``."""
    if value is None:
        return None
    chosen = case(str(value).strip())
    if chosen not in valid:
        raise QueryError(f"unknown {what} {value!r}; valid {what}s: {', '.join(valid)}")
    return chosen


def example_keys(like: str) -> tuple[str | None, str | None]:
    """``(image_id, study_id)`` spelled as stored, for what a user typed after ``--like``.

    ``"cxr3029_im-1404-1001"`` -> ``("CXR3029_IM-1404-1001", None)``; ``"3029"`` / ``"cxr3029"`` ->
    ``(None, "CXR3029")``; anything else (a point id) -> ``(None, None)``.
    """
    image = _IMAGE.fullmatch(like)
    if image is not None:
        return "CXR" + image.group(1).upper(), None
    study = _STUDY.fullmatch(like)
    if study is not None:
        return None, f"CXR{int(study.group(1))}"
    return None, None
