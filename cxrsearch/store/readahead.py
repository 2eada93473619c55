"""Read a shard's files into the OS page cache before qdrant-edge loads them.

qdrant-edge 0.9 drops the page cache of every file it mapped (``posix_fadvise(POSIX_FADV_DONTNEED)``)
when a shard closes. Each new process, and every CLI query is one, then finds nothing cached and the
engine faults its files back page by page: on the 2-core VM of docs/performance.md that is ~0.85 s
per 100k x 512 int8 vector copied into RAM (``always_ram``), 3.3 s to open a 100k-point ``cases``
collection. One sequential ``read`` of the same files first costs ~0.17 s, after which the engine
loads from the cache (0.35 s): a cold open plus the first query drops from 3.4 s to 0.6 s.

Read are the files the engine loads whole at open or scans in a query: the id tracker, the payload
indexes, the quantised vector copies, small exact vectors (``label_probs``), the sparse vectors and
their inverted index, and of each only the extents that hold data (the engine preallocates sparse
files). Not read: the float vectors beside a quantised copy (rescoring touches only the few
candidates it rescores), the payload storage (read only for the hits returned) and the WAL.

Appendable segments (points not optimised yet: chunked vector storage, no int8 copy) are not read
either. They hold at most the optimiser's indexing threshold (about 10 MB per vector), the engine
maps rather than copies them, and faulting them in costs less than reading them first: on a
3,927-point collection, one appendable segment, the read took 26 ms and saved 5-10 ms of the load.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

CHUNK = 1 << 22


def _wanted(path: Path, shard: Path) -> bool:
    parts = path.relative_to(shard).parts
    if parts[0] != "segments" or "payload_storage" in parts:
        return False
    return not (path.name == "matrix.dat" and (path.parent / "quantized.data").exists())


def _appendable(segment: Path) -> bool:
    """Whether ``segment`` still takes new points: its dense vectors are in chunked storage (an
    optimised segment's are one ``Mmap`` / ``InRamMmap`` file each). Unknown layouts count as optimised."""
    try:
        vectors = json.loads((segment / "segment.json").read_text(encoding="utf-8"))["config"]["vector_data"]
        return any("Chunked" in str(v.get("storage_type", "")) for v in vectors.values())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _extents(fd: int, size: int) -> list[tuple[int, int]]:
    """The ``(start, stop)`` byte ranges of a file that hold data: the engine preallocates its
    appendable storages as sparse 32 MB files, and reading their holes would only copy zeros."""
    if not hasattr(os, "SEEK_DATA"):
        return [(0, size)]
    extents, offset = [], 0
    try:
        while offset < size:
            start = os.lseek(fd, offset, os.SEEK_DATA)
            stop = os.lseek(fd, start, os.SEEK_HOLE)
            extents.append((start, stop))
            offset = stop
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # no data after offset (a file of holes has no extent at all)
            return extents
        return extents if offset else [(0, size)]  # EINVAL & co: the file system cannot tell
    return extents


def read_ahead(shard: Path) -> int:
    """Read the data of ``shard``'s files the engine will load into the page cache; the bytes read.

    Best effort: a file that cannot be read here is left for the engine to report."""
    total = 0
    buffer = bytearray(CHUNK)
    segments = shard / "segments"
    optimised = sorted(s for s in segments.iterdir() if not _appendable(s)) if segments.is_dir() else []
    for path in (path for segment in optimised for path in sorted(segment.rglob("*"))):
        if not path.is_file() or not _wanted(path, shard):
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            for start, stop in _extents(fd, os.fstat(fd).st_size):
                os.lseek(fd, start, os.SEEK_SET)
                while start < stop and (read := os.readv(fd, [memoryview(buffer)[: min(CHUNK, stop - start)]])):
                    total += read
                    start += read
        except OSError:
            continue
        finally:
            os.close(fd)
    return total
