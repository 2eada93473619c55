"""Sparse BM25 vectors of reports and queries, made with qdrant-edge's ``Bm25`` (the token ids are the
murmur3 ids of Qdrant's ``qdrant/bm25``, so the same vectors go to a server); the IDF factor is
applied by the engine (the collection's sparse vector has the IDF modifier).

Two choices differ from the defaults, both because radiology reports are mostly negations
("No pneumothorax, pleural effusion or focal consolidation"):

- the **stopword list keeps negation words** (no, not, without, ...): the English default drops
  them, so "no pneumothorax" would equal "pneumothorax";
- **negated mentions are marked**: words inside a negation's scope (from the cue to the end of the
  clause) are written with a ``no`` prefix, so "No pleural effusion." indexes ``no``, ``nopleural``,
  ``noeffusion``. A query "pleural effusion" then matches reports that affirm an effusion, not the
  many that deny one; the query "no effusion" is marked the same way and matches the denials. This
  is a NegEx-style rule (Chapman et al. 2001): pseudo-negations ("no change", "not only") open no
  scope, and a scope ends at ``.``, ``;``, ``:`` or a contrast word (but, however, ...).

``avg_len`` (the corpus' mean document length in tokens; the default of 256 is far from Open-i's
reports) is set from the indexed corpus when a collection is created, and kept in its schema.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from cxrsearch.errors import StoreError
from cxrsearch.store.base import SparseVector
from cxrsearch.store.schema import Bm25Spec

NEGATION_CUES = (
    "no",
    "not",
    "without",
    "negative for",
    "free of",
    "absence of",
    "resolution of",
    "resolved",
    "rather than",
    "never",
    "none",
    "nor",
    "neither",
    "cannot",
    "ruled out",
    "rule out",
)
"""Words that open a negation scope (longest first when matched)."""

PSEUDO_NEGATIONS = (
    "no change",
    "no significant change",
    "no interval change",
    "no new",
    "not only",
    "no increase",
    "no decrease",
    "not necessarily",
    "without change",
    "no further",
)
"""Cues that negate nothing after them ("no change in the small effusion" affirms the effusion;
"no new" keeps an old finding). They open no scope."""

SCOPE_ENDS = ("but", "however", "although", "though", "except", "which", "yet", "aside from", "apart from")

STOPWORDS = frozenset(
    """
a about above after again against all also am an and any are as at be because been before being below between
both by can could did do does doing down during each few for from further had has have having he her here hers
herself him himself his how i if in into is it its itself just me more most my myself of off on once only or
other our ours ourselves out over own same she should so some such than that the their theirs them themselves
then there these they this those through to too under until up very was we were what when where while who whom
why will with would you your yours yourself yourselves
""".split()
)
"""English stopwords without the negation words (no, not, nor, without, none, never): those carry
the meaning of most report sentences and are kept."""

NEGATION_PREFIX = "no"

_CUES = sorted(NEGATION_CUES, key=len, reverse=True)
_PSEUDO = sorted(PSEUDO_NEGATIONS, key=len, reverse=True)
_SCOPE_ENDS = sorted(SCOPE_ENDS, key=len, reverse=True)
_TOKEN = re.compile(r"[a-z0-9]+|[.;:!?]")
_BREAK = frozenset(".;:!?")


def mark_negations(text: str) -> str:
    """``text`` lower-cased, with the words inside each negation scope prefixed by ``no`` (see the
    module docstring): ``"No pleural effusion. Small nodule."`` -> ``"no nopleural noeffusion . small nodule ."``"""
    tokens = _TOKEN.findall(text.lower())
    out: list[str] = []
    negated = False
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in _BREAK:
            negated = False
            out.append(token)
            i += 1
            continue
        if _starts(tokens, i, _SCOPE_ENDS):
            negated = False
        pseudo = _starts(tokens, i, _PSEUDO)
        if pseudo:
            out.extend(tokens[i : i + pseudo])
            i += pseudo
            continue
        cue = _starts(tokens, i, _CUES)
        if cue:
            out.extend(tokens[i : i + cue])
            negated = True
            i += cue
            continue
        out.append(NEGATION_PREFIX + token if negated and token not in STOPWORDS else token)
        i += 1
    return " ".join(out)


def _starts(tokens: Sequence[str], i: int, phrases: Iterable[str]) -> int:
    """Length in tokens of the first phrase of ``phrases`` that starts at ``tokens[i]``, else 0."""
    for phrase in phrases:
        words = phrase.split()
        if tokens[i : i + len(words)] == words:
            return len(words)
    return 0


def token_count(text: str) -> int:
    """Tokens BM25 counts in ``text`` (words that are not stopwords), for ``avg_len``."""
    return sum(1 for token in _TOKEN.findall(text.lower()) if token not in _BREAK and token not in STOPWORDS)


def average_length(texts: Iterable[str | None]) -> float:
    """Mean :func:`token_count` of the non-empty ``texts`` (1.0 for none), rounded to 0.1."""
    counts = [token_count(text) for text in texts if text]
    return round(max(1.0, sum(counts) / len(counts)), 1) if counts else 1.0


@lru_cache(maxsize=8)
def _model(params: Bm25Spec) -> Any:
    import qdrant_edge as qe

    if params.avg_len is None:
        raise StoreError("BM25 avg_len is not set: the collection's schema fixes it when the collection is created")
    config = qe.Bm25Config(
        k=params.k, b=params.b, avg_len=params.avg_len, stopwords=qe.StopwordsSet(custom=set(STOPWORDS))
    )
    return qe.Bm25(config)


def embed_documents(texts: Sequence[str], params: Bm25Spec) -> list[SparseVector | None]:
    """Document vectors (BM25 term weights) of ``texts``; ``None`` for a text with no token left."""
    model = _model(params)
    return [_sparse(model.embed_document(mark_negations(text))) if text else None for text in texts]


def embed_query(text: str, params: Bm25Spec) -> SparseVector | None:
    """The query vector of ``text`` (weight 1 per distinct token; IDF comes from the engine)."""
    return _sparse(_model(params).embed_query(mark_negations(text)))


def _sparse(vector: Any) -> SparseVector | None:
    if not vector.indices:
        return None
    return SparseVector(tuple(int(i) for i in vector.indices), tuple(float(v) for v in vector.values))
