"""``cxrsearch serve``: a small local web app over the same library calls the CLI uses (docs/web.md).

- :mod:`~cxrsearch.serve.settings`: :class:`ServeSettings` (what the command was given) and the
  binding rule (anything but loopback needs a token);
- :mod:`~cxrsearch.serve.files`: the one function that turns a payload's ``image_path`` into a file
  the server may read (only under the configured images roots);
- :mod:`~cxrsearch.serve.thumbs`: radiographs rendered through the project's decoder, cached by
  the file's fingerprint;
- :mod:`~cxrsearch.serve.service`: the loaded store and model, search and case look-ups;
- :mod:`~cxrsearch.serve.jobs`: explanations computed in the background, with their state;
- :mod:`~cxrsearch.serve.app`: the FastAPI application (pages, ``/api/``, the token guard);
- :mod:`~cxrsearch.serve.sheet`: the same cards as one self-contained HTML file (``--html``).

Importing this package is light; FastAPI, Jinja and torch load only when an app or a sheet is made.
"""
