"""The routes of ``cxrsearch serve``, one :class:`fastapi.APIRouter` per concept; ``create_app``
(:mod:`cxrsearch.serve.app`) includes them in this order:

- :mod:`~cxrsearch.serve.routes.pages`: the server-rendered pages (search form and hits, a case,
  "explain this match");
- :mod:`~cxrsearch.serve.routes.images`: radiographs re-rendered, an explanation's overlays;
- :mod:`~cxrsearch.serve.routes.search_api`: ``/api/info``, ``/api/search``, ``/api/case/{id}``;
- :mod:`~cxrsearch.serve.routes.explain_api`: ``/api/explain`` and a job's state.

What every route shares lives in :mod:`~cxrsearch.serve.routes.state`: :class:`AppState` (the
service and its explanation jobs, kept on ``app.state``), handed to each route as the ``State``
dependency.
"""
