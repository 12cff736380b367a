"""Code-bearing models run here: a bubblewrap'd worker process per tenant.

The worker (:mod:`matih_ml.runtime.worker`) sees, read-only, the Python environment,
the worker script and one folder of that tenant's model files; a private ``/tmp``;
nothing else of the host. It has no network (its own empty network namespace), no
environment variables of the service (``--clearenv``), its own PID, IPC and user
namespaces, and address-space and CPU-time limits (``prlimit``). A request that does
not answer in time kills the worker; a dead worker is started again on the next
request, and the request that found it dead gets a 503.

Nothing the worker answers is trusted: answers are JSON frames of bounded size, never
pickles, and are checked by the caller.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matih_ml.errors import UnavailableError
from matih_ml.runtime import worker as worker_module
from matih_ml.runtime.worker import MAX_FRAME, encode_frame

log = logging.getLogger(__name__)

MODELS_MOUNT = "/models"
OUT_MOUNT = "/out"
_WORKER_MOUNT = "/sandbox/worker.py"


class SandboxFailedError(UnavailableError):
    """The sandbox could not answer: it is off, it died, or it ran out of time."""

    code = "SANDBOX_UNAVAILABLE"


class ModelRaisedError(Exception):
    """The tenant's model raised inside the sandbox (its message, as the worker said)."""


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits of one worker.

    Attributes:
        memory_mb: Its address space.
        cpu_s: CPU seconds over its whole life; past them the kernel ends it and the
            next request starts a fresh one.
        timeout_s: How long one request may take before the worker is killed.
        start_timeout_s: How long a new worker may take to answer its first ping.
    """

    memory_mb: int = 4096
    cpu_s: int = 600
    timeout_s: float = 60.0
    start_timeout_s: float = 60.0


def bwrap_path() -> str | None:
    """The bubblewrap binary, if installed."""
    return shutil.which("bwrap")


def _python_roots() -> list[str]:
    """The folders the worker's Python needs: the environment and its base install."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    exe = Path(sys.executable)
    roots.add(str(exe.parent.parent))
    roots.add(str(exe.resolve().parent.parent))
    # /usr is mounted whole; a root under it is already there.
    return sorted(r for r in roots if r and not (r == "/usr" or r.startswith("/usr/")))


def command(models: Path, out: Path | None, limits: SandboxLimits) -> list[str]:
    """The command line that starts one sandboxed worker.

    Args:
        models: Mounted read-only at ``/models``.
        out: Mounted writable at ``/out``, for a worker that writes files back.
        limits: Its resource limits.
    """
    bwrap = bwrap_path()
    if bwrap is None:
        raise SandboxFailedError(
            "Code-bearing models need the sandbox, and bubblewrap (bwrap) is not installed."
        )
    args = [
        "prlimit",
        f"--as={limits.memory_mb << 20}",
        f"--cpu={limits.cpu_s}",
        "--core=0",
        "--",
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/usr",
        "/usr",
        # The private /tmp, /proc and /dev come before the binds: a later mount hides
        # what an earlier one put beneath it (a checkout under /tmp, say).
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
    ]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = Path("/") / link
        if target.is_symlink():
            args += ["--symlink", os.readlink(target), f"/{link}"]
        elif target.is_dir():
            args += ["--ro-bind", str(target), f"/{link}"]
    for root in _python_roots():
        args += ["--ro-bind", root, root]
    args += ["--ro-bind", worker_module.__file__, _WORKER_MOUNT]
    args += ["--ro-bind", str(models), MODELS_MOUNT]
    if out is not None:
        args += ["--bind", str(out), OUT_MOUNT]
    args += [
        "--chdir",
        "/tmp",
        "--setenv",
        "HOME",
        "/tmp",
        "--setenv",
        "PATH",
        "/usr/bin:/bin",
        "--setenv",
        "PYTHONDONTWRITEBYTECODE",
        "1",
        "--setenv",
        "MLFLOW_DISABLE_TELEMETRY",
        "true",
        "--setenv",
        "DO_NOT_TRACK",
        "true",
        "--setenv",
        "OMP_NUM_THREADS",
        "1",
        "--",
        sys.executable,
        "-I",
        _WORKER_MOUNT,
    ]
    return args


class SandboxProcess:
    """One running worker: requests go one at a time.

    Args:
        models: The folder it sees at ``/models``.
        limits: Its limits.
        out: A folder it may write, at ``/out``.
    """

    def __init__(self, models: Path, limits: SandboxLimits, out: Path | None = None) -> None:
        self.limits = limits
        self._proc = subprocess.Popen(
            command(models, out, limits),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self.pid = self._proc.pid
        self._stderr_tail: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        self.call({"op": "ping"}, timeout_s=limits.start_timeout_s)

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        for raw in self._proc.stderr:
            line = raw.decode("utf-8", errors="replace").rstrip()
            self._stderr_tail = [*self._stderr_tail[-19:], line]
            log.debug("sandbox %s: %s", self.pid, line)

    @property
    def alive(self) -> bool:
        """Whether the process is still running."""
        return self._proc.poll() is None

    def call(self, request: dict[str, Any], *, timeout_s: float | None = None) -> dict[str, Any]:
        """Send one request and wait for its answer.

        Raises:
            SandboxFailedError: If the worker died, or did not answer in time (it is
                then killed).
            ModelRaisedError: If the model raised.
        """
        timeout = self.limits.timeout_s if timeout_s is None else timeout_s
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(encode_frame(request))
            self._proc.stdin.flush()
            answer = self._read(self._proc.stdout.fileno(), time.monotonic() + timeout)
        except (BrokenPipeError, OSError, EOFError) as exc:
            self.kill()
            tail = " | ".join(self._stderr_tail[-3:])
            raise SandboxFailedError(
                f"The model's sandbox stopped ({type(exc).__name__}); it is being restarted.",
                details={"dependency": "sandbox", "stderr": tail[-500:]},
            ) from None
        except TimeoutError:
            self.kill()
            raise SandboxFailedError(
                f"The model did not answer within {timeout:g} s; its sandbox was stopped.",
                details={"dependency": "sandbox", "timeout_s": timeout},
            ) from None
        if answer.get("ok") is not True:
            raise ModelRaisedError(str(answer.get("error", "the model failed"))[:2000])
        return answer

    def _read(self, fd: int, deadline: float) -> dict[str, Any]:
        head = self._read_exactly(fd, 4, deadline)
        (size,) = struct.unpack(">I", head)
        if size > MAX_FRAME:
            raise EOFError("answer over the size limit")
        import json

        value = json.loads(self._read_exactly(fd, size, deadline))
        if not isinstance(value, dict):
            raise EOFError("answer is not an object")
        return value

    @staticmethod
    def _read_exactly(fd: int, size: int, deadline: float) -> bytes:
        chunks: list[bytes] = []
        got = 0
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while got < size:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    raise TimeoutError
                chunk = os.read(fd, min(size - got, 1 << 20))
                if not chunk:
                    raise EOFError("the worker closed its output")
                chunks.append(chunk)
                got += len(chunk)
        return b"".join(chunks)

    def kill(self) -> None:
        """Stop the worker and everything in its namespace."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("sandbox worker %s did not exit", self._proc.pid)
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class TenantSandboxes:
    """One long-lived worker per tenant; started on first use.

    The serving pool sees ``root/<tenant>`` read-only. The upload pool
    (``writable=True``) also writes there, at ``/out``: a tenant's uploads are unpickled
    one after the other in that tenant's worker, which pays its imports once instead of
    once per upload. Whatever one upload does to that worker can reach only the same
    tenant's later uploads, whose output the service checks as untrusted anyway.

    Args:
        root: A tenant's worker sees ``root/<tenant>`` only.
        limits: The workers' limits.
        enabled: False when the operator turned the sandbox off: code-bearing models
            are then refused, never loaded in the service.
        writable: Mount the tenant's folder writable at ``/out`` as well.
        idle_s: Stop a worker unused this long (None: keep it until :meth:`close`).
    """

    def __init__(
        self,
        root: Path,
        limits: SandboxLimits,
        *,
        enabled: bool = True,
        writable: bool = False,
        idle_s: float | None = None,
    ) -> None:
        self._root = root
        self.limits = limits
        self.enabled = enabled
        self._writable = writable
        self._idle_s = idle_s
        self._lock = threading.Lock()
        self._workers: dict[str, SandboxProcess] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._used: dict[str, float] = {}

    def _require(self) -> None:
        if not self.enabled:
            raise SandboxFailedError(
                "This model carries code, and the sandbox that runs such models is off "
                "(MATIH_SANDBOX=off).",
                details={"dependency": "sandbox"},
            )

    def folder(self, tenant: str) -> Path:
        """The host folder the tenant's worker sees (created if missing)."""
        folder = self._root / tenant
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def call(self, tenant: str, request: dict[str, Any]) -> dict[str, Any]:
        """Send ``request`` to the tenant's worker, starting it if needed (a new worker
        loads a model again on the first request that names it).

        Raises:
            SandboxFailedError: As :meth:`SandboxProcess.call`, or when it cannot start.
            ModelRaisedError: If the model raised.
        """
        self._require()
        self._stop_idle()
        with self._lock:
            gate = self._locks.setdefault(tenant, threading.Lock())
        with gate:
            worker = self._workers.get(tenant)
            if worker is None or not worker.alive:
                folder = self.folder(tenant)
                out = folder if self._writable else None
                worker = self._workers[tenant] = SandboxProcess(folder, self.limits, out=out)
            try:
                return worker.call(request)
            finally:
                with self._lock:
                    self._used[tenant] = time.monotonic()

    def _stop_idle(self) -> None:
        if self._idle_s is None:
            return
        now = time.monotonic()
        with self._lock:
            idle = [t for t, at in self._used.items() if now - at > self._idle_s]
        for tenant in idle:
            gate = self._locks[tenant]
            if not gate.acquire(blocking=False):
                continue  # in use right now: not idle
            try:
                with self._lock:
                    if now - self._used.get(tenant, now) <= self._idle_s:
                        continue
                    self._used.pop(tenant, None)
                    worker = self._workers.pop(tenant, None)
                if worker is not None:
                    worker.kill()
            finally:
                gate.release()

    def close(self) -> None:
        """Stop every worker."""
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
            self._used.clear()
        for w in workers:
            w.kill()
