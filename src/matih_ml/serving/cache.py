"""Loaded versions, bounded and least-recently-used first out.

A version's files are downloaded once per process into the data folder, and loaded at
most once at a time: concurrent first requests for one version wait for one load
instead of each downloading it.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path

from matih_ml.runtime.loader import ModelRuntime
from matih_ml.serving.loaded import LoadedModel

Key = tuple[str, str, str]  # tenant, model, version


class ModelCache:
    """At most ``size`` loaded versions.

    Args:
        size: How many versions stay loaded.
        root: Where downloaded files are kept.
        download: Copies a version's files into a folder.
        runtime: Loads a version (in process, or in the tenant's sandbox, which sees
            ``root/<tenant>``).
        verify: Checks a version's downloaded files against its signature before they
            are loaded, raising to refuse them (None: no check).
    """

    def __init__(
        self,
        size: int,
        root: Path,
        download: Callable[[str, str, str, Path], Path],
        runtime: ModelRuntime,
        *,
        verify: Callable[[str, str, str, Path], object] | None = None,
    ) -> None:
        self.size = size
        self._root = root
        self._download = download
        self._runtime = runtime
        self._verify = verify
        self._lock = threading.Lock()
        self._models: OrderedDict[Key, LoadedModel] = OrderedDict()
        self._loading: dict[Key, threading.Lock] = {}
        self.loads = 0
        self._loads_of: Counter[Key] = Counter()

    def get(self, tenant_id: str, model: str, version: str) -> LoadedModel:
        """The loaded version, loading it if needed."""
        found = self.peek(tenant_id, model, version)
        if found is not None:
            return found
        key = (tenant_id, model, version)
        with self._lock:
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            with self._lock:
                found = self._models.get(key)
            if found is None:
                files = self._files(key)
                self._check(key, files)
                found = LoadedModel.load(tenant_id, model, version, files, self._runtime)
                with self._lock:
                    self.loads += 1
                    self._loads_of[key] += 1
                    self._models[key] = found
                    while len(self._models) > self.size:
                        self._models.popitem(last=False)
            with self._lock:
                self._loading.pop(key, None)
            return found

    def loads_of(self, tenant_id: str, model: str, version: str) -> int:
        """How many times this version has been loaded (each load after an eviction
        counts)."""
        with self._lock:
            return self._loads_of[(tenant_id, model, version)]

    def peek(self, tenant_id: str, model: str, version: str) -> LoadedModel | None:
        """The loaded version if it is loaded (never loads)."""
        key = (tenant_id, model, version)
        with self._lock:
            found = self._models.get(key)
            if found is not None:
                self._models.move_to_end(key)
            return found

    def cached(self) -> list[Key]:
        """What is loaded, least recently used first."""
        with self._lock:
            return list(self._models)

    def _check(self, key: Key, files: Path) -> None:
        """Verify the files once per load (not per request); refused files are removed,
        so that the next load downloads them again instead of trusting this copy."""
        if self._verify is None:
            return
        try:
            self._verify(*key, files)
        except BaseException:
            shutil.rmtree(files, ignore_errors=True)
            with self._lock:
                self._loading.pop(key, None)
            raise

    def _files(self, key: Key) -> Path:
        folder = self._root.joinpath(*key)
        if (folder / "MLmodel").exists():
            return folder
        folder.parent.mkdir(parents=True, exist_ok=True)
        # Download beside the final folder and rename: a process killed mid-download
        # leaves no folder that looks complete.
        partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder.parent))
        try:
            self._download(*key, partial)
            try:
                partial.rename(folder)
            except OSError:  # another process finished first
                shutil.rmtree(partial, ignore_errors=True)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return folder
