"""Callers of a serving endpoint in the background: what a canary or an A/B test measures.

They send one trip per request through the real databricks-sdk, for as long as they run, and
count who answered (the ``served-model-name`` of each answer) and how many requests failed, so
a demo or a test can say which versions callers were answered by.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class Callers:
    def __init__(self, w: Any, endpoint: str, *, drifted: bool = False, threads: int = 1, seed: int = 3) -> None:
        self.w, self.endpoint = w, endpoint
        self.drifted, self.seed = drifted, seed
        self.answered: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()  # error class name → count
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, index: int) -> None:
        from databricks.sdk.errors import DatabricksError

        from local.taxi import trip_stream

        # Varied trips, never repeated, so that each version's predictions have a distribution to
        # compare and a window of this traffic is a sample of independent trips (a monitor may
        # freeze one as a version's drift baseline).
        trips = trip_stream((self.seed, index), drifted=self.drifted)
        while not self._stop.is_set():
            try:
                got = self.w.serving_endpoints.query(self.endpoint, dataframe_records=[next(trips)])
            except DatabricksError as exc:
                with self._lock:
                    self.failed[type(exc).__name__] += 1
                continue
            with self._lock:
                self.answered[got.served_model_name] += 1

    def versions(self) -> set[str]:
        """The versions that answered (served-entity names end in ``-<version>``)."""
        with self._lock:
            return {name.rsplit("-", 1)[-1] for name in self.answered}

    def __enter__(self) -> Callers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)
