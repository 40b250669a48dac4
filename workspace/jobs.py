"""Background jobs: cohort-wide work that outlives the page run that asked for it.

A Streamlit page reruns on every widget change; work started inside a run is cut off by the next one. A job here
runs in a thread of the server process, keyed by what it computes (so two sessions asking for the same result
share one job), reports progress, and keeps its result or error until read. Pages poll :func:`get` and show
progress; moving a widget meanwhile does not restart anything. Results land in the workspace cache as usual, so a
finished job is also visible to every later session and to the command line.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Progress", "Job", "start", "get", "forget"]

Progress = Callable[[int, int], None]


@dataclasses.dataclass
class Job:
    key: str
    title: str
    started: float
    done: int = 0
    total: int = 0
    finished: float | None = None
    result: Any = None
    error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self.finished is None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0

    def describe(self) -> str:
        elapsed = (self.finished or time.time()) - self.started
        if self.running:
            left = ""
            if self.done and self.total:
                left = f", about {elapsed / self.done * (self.total - self.done):.0f} s left"
            return f"{self.title}: {self.done}/{self.total} ({elapsed:.0f} s{left})"
        return f"{self.title}: {'failed' if self.error else 'done'} in {elapsed:.0f} s"


_jobs: dict[str, Job] = {}
_lock = threading.Lock()


def start(key: str, title: str, work: Callable[[Progress], Any]) -> Job:
    """The job computing ``key``: the running or finished one if there is one, else ``work(progress)`` started in
    a background thread. A failed job is started again on the next call."""
    with _lock:
        job = _jobs.get(key)
        if job is not None and not (job.error and not job.running):
            return job
        job = Job(key=key, title=title, started=time.time())
        _jobs[key] = job

    def progress(done: int, total: int) -> None:
        job.done, job.total = int(done), int(total)

    def run() -> None:
        try:
            job.result = work(progress)
        except BaseException as e:  # noqa: BLE001 - kept for the page to show; the thread must not die silently
            job.error = e
        finally:
            job.finished = time.time()

    threading.Thread(target=run, name=f"glassbox-job-{title}", daemon=True).start()
    return job


def get(key: str) -> Job | None:
    return _jobs.get(key)


def forget(key: str) -> None:
    with _lock:
        _jobs.pop(key, None)
