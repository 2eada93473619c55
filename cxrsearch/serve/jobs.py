"""Explanations computed in the background: "explain this match" takes seconds, so a page starts a
job and shows its state (queued, running with the time so far, done, failed) until it is done.

One worker thread runs the jobs one after the other (each already uses every core); a job is named
by what it explains (hit + query + steps), so asking twice returns the same job. Finished jobs are
kept (the last :data:`KEEP` of them) with their files under the server's cache folder.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrsearch.errors import CxrSearchError

if TYPE_CHECKING:  # pragma: no cover
    from cxrsearch.explain.explanation import Explanation
    from cxrsearch.serve.service import Service

KEEP = 32
FILE_NAMES = {"ig": "ig_overlay", "attention": "attention_overlay", "figure": "figure"}
"""URL name -> key of ``Explanation.files``."""


@dataclass
class Job:
    """One explanation: ``state`` is ``queued``, ``running``, ``done`` or ``failed``."""

    key: str
    hit: str
    query: dict[str, Any]
    folder: Path
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    result: Explanation | None = None

    def elapsed(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.time()) - self.started

    def status(self, base: str = "") -> dict[str, Any]:
        """The job as JSON (``result`` is ``explain --json``'s object once done, with ``files`` as URLs)."""
        out: dict[str, Any] = {
            "job": self.key,
            "state": self.state,
            "hit": self.hit,
            "query": self.query,
            "elapsed": round(self.elapsed(), 2),
            "error": self.error,
        }
        if self.result is not None:
            data = self.result.to_dict()
            data["files"] = {
                name: f"{base}/explain/{self.key}/{name}.png"
                for name, key in FILE_NAMES.items()
                if key in self.result.files
            }
            out["result"] = data
        return out


class ExplainJobs:
    """Starts, runs and remembers explanation jobs for ``service``."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.folder = service.settings.cache_dir / "explain"
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cxrsearch-explain")

    def get(self, key: str) -> Job | None:
        with self._lock:
            return self._jobs.get(key)

    def start(self, key: str, hit: str, query: dict[str, Any]) -> Job:
        """The job named ``key`` (started now unless it exists and did not fail). ``query``: the
        :class:`~cxrsearch.explain.request.ExplainRequest` fields (``text``, ``image``, ``like``, ``label``)."""
        from cxrsearch.explain.request import ExplainRequest

        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.state != "failed":
                return job
            allowed = {f.name for f in fields(ExplainRequest)}
            request_fields = {k: v for k, v in query.items() if v is not None}
            images = self.service.image_roots()
            if "images" in allowed and images:
                request_fields["images"] = images[0]
            request = ExplainRequest(
                hit=hit,
                collection=self.service.collection,
                steps=self.service.settings.explain_steps,
                out_dir=self.folder / key,
                **request_fields,
            )
            shown = {k: (None if v is None else (Path(v).name if k == "image" else v)) for k, v in query.items()}
            job = Job(key=key, hit=hit, query=shown, folder=self.folder / key)
            self._jobs[key] = job
            self._prune()
        self._pool.submit(self._run, job, request)
        return job

    def _run(self, job: Job, request: Any) -> None:
        from cxrsearch.explain.explain import explain
        from cxrsearch.explain.output import write_explanation

        job.state, job.started = "running", time.time()
        try:
            job.result = write_explanation(
                explain(request, self.service.store, self.service.encoder("explain")), request
            )
            job.state = "done"
        except CxrSearchError as exc:
            job.error, job.state = str(exc.message), "failed"
        except Exception as exc:  # a failed job is a state on the page, never a dead worker
            job.error, job.state = f"internal error: {type(exc).__name__}: {exc}", "failed"
        finally:
            job.finished = time.time()

    def wait(self, job: Job, seconds: float) -> Job:
        """Wait up to ``seconds`` for ``job`` to finish."""
        deadline = time.time() + seconds
        while job.state in ("queued", "running") and time.time() < deadline:
            time.sleep(0.05)
        return job

    def file(self, key: str, name: str) -> Path | None:
        job = self.get(key)
        if job is None or job.result is None or name not in FILE_NAMES:
            return None
        path = job.result.files.get(FILE_NAMES[name])
        return None if path is None else Path(path)

    def _prune(self) -> None:
        while len(self._jobs) > KEEP:
            old_key, old = next(iter(self._jobs.items()))
            if old.state in ("queued", "running"):
                break
            self._jobs.pop(old_key)
            shutil.rmtree(old.folder, ignore_errors=True)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
