"""Search: a :class:`QuerySpec` (text, image, both, or an indexed example + label/view/split filters)
-> the checkpoint's embeddings -> filtered nearest neighbours in a collection -> :class:`Hit` list.

- :mod:`~cxrsearch.search.spec`: :class:`QuerySpec`, validation of labels, views and splits
- :mod:`~cxrsearch.search.modes`: the query-mode table (inputs, query vectors, prefetches, fusion)
- :mod:`~cxrsearch.search.query`: :func:`search`, :func:`search_diverse` (MMR), :func:`facets` (label counts)
- :mod:`~cxrsearch.search.collapse`: :func:`collapse` (identical reports shown once)
- :mod:`~cxrsearch.search.results`: hits as JSON records and display helpers

See docs/search.md. Importing this package is light (no torch, no qdrant).
"""

from cxrsearch.search.collapse import CollapsedHit, collapse
from cxrsearch.search.modes import MODES as MODE_TABLE
from cxrsearch.search.modes import encode_queries, run_query
from cxrsearch.search.query import encoder_for, facets, find_example, search, search_diverse
from cxrsearch.search.results import hit_record
from cxrsearch.search.spec import MODES, QuerySpec

__all__ = [
    "MODES",
    "MODE_TABLE",
    "CollapsedHit",
    "QuerySpec",
    "collapse",
    "encode_queries",
    "encoder_for",
    "facets",
    "find_example",
    "hit_record",
    "run_query",
    "search",
    "search_diverse",
]
