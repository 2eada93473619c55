"""The label vocabulary and the mapping from MeSH *major* terms to labels.

Open-i reports carry manual MeSH annotations such as ``Opacity/lung/base/left/mild``: a heading
(``Opacity``) followed by ``/``-separated qualifiers. Labels come from those structured terms only,
never from keyword matching on the free text (which gets negations such as "no effusion" wrong).

The vocabulary lives in ``cxrsearch/data/labels.json``; the rules are explained, with the real
frequencies, in ``docs/labels.md``. In short:

- a rule names a MeSH heading and, optionally, a qualifier that must also appear
  (``{"heading": "Lung", "qualifier": "hypoinflation"}``); comparison ignores case and spacing;
- ``normal`` is given only when *every* major term is ``normal``;
- terms no rule knows (``No Indexing``, ``Thoracic Vertebrae/degenerative``, ...) give no label.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from cxrsearch.errors import ConfigError
from cxrsearch.text.bm25 import mark_negations

NORMAL = "normal"
_VOCAB_FILE = "labels.json"


@dataclass(frozen=True)
class Rule:
    """Matches a MeSH major term whose heading is ``heading`` (and has ``qualifier``, if set)."""

    heading: str
    qualifier: str | None = None


@dataclass(frozen=True)
class LabelSpec:
    """One label of the vocabulary: its name, a one-line description and its MeSH rules."""

    name: str
    description: str
    rules: tuple[Rule, ...]


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def split_term(term: str) -> tuple[str, tuple[str, ...]]:
    """``"Opacity/lung/base/left"`` -> ``("opacity", ("lung", "base", "left"))``, normalised."""
    heading, *qualifiers = term.split("/")
    return _norm(heading), tuple(q for q in (_norm(part) for part in qualifiers) if q)


def _parse_vocabulary(raw: object, where: str) -> tuple[LabelSpec, ...]:
    if not isinstance(raw, dict) or not isinstance(raw.get("labels"), list):
        raise ConfigError("expected an object with a 'labels' list", path=where)
    specs: list[LabelSpec] = []
    seen_rules: dict[tuple[str, str | None], str] = {}
    for entry in raw["labels"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry.get("rules"):
            raise ConfigError(f"each label needs a 'name' and non-empty 'rules': {entry!r}", path=where)
        name = entry["name"]
        if any(spec.name == name for spec in specs):
            raise ConfigError(f"label {name!r} is listed twice", path=where)
        rules = []
        for rule in entry["rules"]:
            heading, qualifier = rule.get("heading"), rule.get("qualifier")
            if not isinstance(heading, str) or not heading.strip() or not isinstance(qualifier, (str, type(None))):
                raise ConfigError(f"label {name!r}: bad rule {rule!r}", path=where)
            key = (_norm(heading), None if qualifier is None else _norm(qualifier))
            if key in seen_rules:
                raise ConfigError(f"rule {rule!r} is used by both {seen_rules[key]!r} and {name!r}", path=where)
            seen_rules[key] = name
            rules.append(Rule(heading=key[0], qualifier=key[1]))
        specs.append(LabelSpec(name=name, description=str(entry.get("description", "")), rules=tuple(rules)))
    if NORMAL not in {spec.name for spec in specs}:
        raise ConfigError(f"the vocabulary must contain {NORMAL!r}", path=where)
    return tuple(specs)


@lru_cache(maxsize=1)
def vocabulary() -> tuple[LabelSpec, ...]:
    """Every label with its description and rules, in the fixed head order."""
    resource = resources.files("cxrsearch.data").joinpath(_VOCAB_FILE)
    where = f"cxrsearch/data/{_VOCAB_FILE}"
    try:
        raw = json.loads(resource.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the label vocabulary: {exc}", path=where) from exc
    return _parse_vocabulary(raw, where)


@lru_cache(maxsize=1)
def label_names() -> tuple[str, ...]:
    """Label names in the fixed order of the vocabulary (the model's classification-head order)."""
    return tuple(spec.name for spec in vocabulary())


@lru_cache(maxsize=1)
def _rule_table() -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    by_heading: dict[str, int] = {}
    by_qualifier: dict[tuple[str, str], int] = {}
    for index, spec in enumerate(vocabulary()):
        for rule in spec.rules:
            if rule.qualifier is None:
                by_heading[rule.heading] = index
            else:
                by_qualifier[(rule.heading, rule.qualifier)] = index
    return by_heading, by_qualifier


def labels_from_mesh(terms: Iterable[str]) -> tuple[str, ...]:
    """The vocabulary labels of a report, from its MeSH **major** terms, in vocabulary order.

    >>> labels_from_mesh(["Cardiomegaly/mild", "Opacity/lung/base/left"])
    ('cardiomegaly', 'lung opacity')
    >>> labels_from_mesh(["normal"]), labels_from_mesh(["No Indexing"])
    (('normal',), ())
    """
    by_heading, by_qualifier = _rule_table()
    names = label_names()
    normal_index = names.index(NORMAL)
    found: set[int] = set()
    only_normal = True
    any_term = False
    for term in terms:
        heading, qualifiers = split_term(term)
        if not heading:
            continue
        any_term = True
        if heading != NORMAL:
            only_normal = False
        if heading in by_heading:
            found.add(by_heading[heading])
        found.update(by_qualifier[(heading, q)] for q in qualifiers if (heading, q) in by_qualifier)
    found.discard(normal_index)
    if any_term and only_normal:
        found.add(normal_index)
    return tuple(names[i] for i in sorted(found))


_WORDS = re.compile(r"\w+")


def word_stem(word: str) -> str:
    """A word without its plural ending ("opacities" -> "opacity", "effusions" -> "effusion")."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    return word[:-1] if word.endswith("s") and not word.endswith("ss") and len(word) > 3 else word


@lru_cache(maxsize=1)
def label_keywords() -> dict[str, tuple[frozenset[str], ...]]:
    """Per label, the word sets that name it: its name, and each MeSH rule's heading words plus its
    qualifier's ("Hernia, Hiatal" -> {hernia, hiatal}; "Lung/hypoinflation" -> {lung, hypoinflation});
    a text names the label when it holds every word of one set."""
    out = {}
    for spec in vocabulary():
        sets = {frozenset(word_stem(w) for w in _WORDS.findall(spec.name.lower()))}
        for rule in spec.rules:
            sets.add(frozenset(word_stem(w) for w in _WORDS.findall(f"{rule.heading} {rule.qualifier or ''}".lower())))
        out[spec.name] = tuple(sorted(sets - {frozenset()}, key=sorted))
    return out


def negated_labels(text: str) -> frozenset[str]:
    """The labels ``text`` names only inside a negation ("no pleural effusion", "without
    cardiomegaly"), by the label words of :func:`label_keywords` and the negation marking of
    :func:`cxrsearch.text.bm25.mark_negations` (the rules that pick finding sentences for training).
    A label also named outside a negation is not negated ("no edema; small effusion" negates edema
    only)."""
    words = {word_stem(w) for w in mark_negations(text).split()}
    out = set()
    for label, sets in label_keywords().items():
        affirmed = any(need <= words for need in sets)
        if not affirmed and any({"no" + w for w in need} <= words for need in sets):
            out.add(label)
    return frozenset(out)
