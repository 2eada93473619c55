"""Fixtures of the index tests, shared with tests/search (defined in tests/search/conftest.py): the
real-data ``indexed`` store (one per backend), the Open-i-named radiographs (``openi_images``) and the
``studies`` they belong to. Layout and expected points: tests/search/layout.py."""

from tests.search.conftest import indexed, openi_images, studies  # noqa: F401  (fixtures shared with tests/search)
