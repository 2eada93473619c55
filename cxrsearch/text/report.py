"""The report text the model reads, and how de-identification tokens are handled.

The model reads **FINDINGS followed by IMPRESSION** (what the radiologist saw and concluded). The
COMPARISON and INDICATION sections are left out: they describe prior exams and the clinical
question, not this radiograph, and are the most heavily de-identified parts of the reports.

Open-i replaced every word its de-identifier suspected of being identifying with ``XXXX``; it also
hit many ordinary words ("The XXXX are intact", "no XXXX of pneumothorax"). The original word
cannot be recovered, so in the model's text:

1. ``x-XXXX`` becomes ``x-ray``: "chest x-XXXX" (281 times in the reports) is always "chest x-ray";
2. every other ``XXXX`` (with an attached ``'s``, and a ``-``/``/`` joining it to a neighbour) is
   removed, so "no XXXX of pneumothorax" reads "no of pneumothorax": the negation survives and no
   meaningless token ("xx", "##xx" after sub-word tokenisation) dilutes the embedding;
3. spaces and punctuation left dangling by a removal are tidied ("XXXX, XXXX." -> ".");
4. a section with nothing left is treated as missing.

``Study`` keeps the sections exactly as written (``XXXX`` included) for display; only the text the
model reads is cleaned, here, in one place, so training, indexing and search cannot disagree.
"""

from __future__ import annotations

import re

_XRAY = re.compile(r"\b([Xx])-XXXX\b")
_REDACTION = re.compile(r"(?:(?<=\w)[-/])?X{4,}(?:'[A-Za-z]+)?(?:[-/](?=\w))?")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?)])")
_COMMA_BEFORE_PUNCT = re.compile(r",\s*(?=[.,;:!?])")
_REPEATED_PERIOD = re.compile(r"\.(?:\s*\.)+")
_EMPTY_PARENS = re.compile(r"\(\s*\)")
_LEADING_PUNCT = re.compile(r"^[\s.,;:!?/-]+")
_HAS_WORD = re.compile(r"\w")
_WORDS = re.compile(r"\w+")


def clean_section(text: str | None) -> str | None:
    """One report section with ``XXXX`` tokens handled as described above; ``None`` if nothing is left.

    >>> clean_section("There are no XXXX of a pleural effusion. Normal chest x-XXXX.")
    'There are no of a pleural effusion. Normal chest x-ray.'
    >>> clean_section("XXXX, XXXX.") is None
    True
    """
    if text is None:
        return None
    out = _XRAY.sub(r"\1-ray", " ".join(text.split()))
    out = _REDACTION.sub("", out)
    out = " ".join(out.split())
    out = _EMPTY_PARENS.sub("", out)
    out = _SPACE_BEFORE_PUNCT.sub(r"\1", out)
    out = _COMMA_BEFORE_PUNCT.sub("", out)
    out = _REPEATED_PERIOD.sub(".", out)
    out = _LEADING_PUNCT.sub("", " ".join(out.split()))
    return out if _HAS_WORD.search(out) else None


def _as_sentences(text: str) -> str:
    return text if text[-1] in ".!?" else text + "."


def report_text(findings: str | None, impression: str | None) -> str:
    """The text the model reads: cleaned FINDINGS then IMPRESSION, ``""`` when both are missing.

    An impression identical to the findings is included once.
    """
    parts: list[str] = []
    for section in (clean_section(findings), clean_section(impression)):
        if section is not None and section not in parts:
            parts.append(section)
    return " ".join(_as_sentences(part) for part in parts)


def normalise_report(text: str | None) -> str | None:
    """Lower-case words only: the key under which two reports count as identical (``None`` stays).

    Training (the contrastive loss's "identical report" key), the ``novel`` evaluation subset and the
    collapsing of identical report texts in search results all use it."""
    return None if text is None else " ".join(_WORDS.findall(text.lower()))
