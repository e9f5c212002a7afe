"""Work spread over the machine's cores: the first plan of a big grid (issue 27.4), the token fit
of a big dataset (27.5); and work done ahead on another core while this one goes on (`ahead`: a
re-plan's check of its plan files, one stat each: 14,000 for 5,000 jobs; the manifest parsed and
validated, jsonschema's 65 ms import included, while plan imports the rest of the compiler).

Rendering 5,000 nodes, creating their 14,000 files or counting a million rows' tokens is Python
work that holds the interpreter lock, so threads do not share it out; a forked process does.
`on_cores` gives every worker process a share of the items (interleaved, so fine-tunes and evaluations mix) and returns the
results in the items' order, as one loop would. A child inherits everything the parent has
computed (copy on write), sends its results back pickled through a pipe and exits without running
any of the parent's exit handlers. Below `min_items`, on one core, or where there is no fork, the
caller's own loop runs instead (None).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
MAX_WORKERS = 4  # processes, the caller's included: a login node is shared


def workers() -> int:
    """How many processes to use: the cores this process may run on, at most MAX_WORKERS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS)) if hasattr(os, "fork") else 1


def on_cores(work: Callable[[Sequence[T]], list[Any]], items: Sequence[T], *, min_items: int) -> list[Any] | None:
    """work(share) for each worker's share, concatenated back into the items' order; None when it
    is not worth forking (the caller runs work(items) itself). An exception in a child is raised
    here, after every child has ended. A share no process could be forked for (a memory or
    process limit), or whose process died before it answered, is worked here (every caller's work
    can be done again: rendering and counting are pure, a file written twice is replaced)."""
    n = workers()
    if n < 2 or len(items) < min_items:
        return None
    shares = [items[i::n] for i in range(n)]
    children: list[tuple[int, int, int]] = []  # (share, pid, read end of its pipe)
    here = [0]  # the shares this process works
    results: dict[int, list[Any]] = {}
    try:
        for i in range(1, n):
            try:
                children.append((i, *_fork(work, shares[i])))
            except OSError:  # EAGAIN, ENOMEM: no process to be had
                here.append(i)
        for i in here:
            results[i] = work(shares[i])
    except BaseException:
        for _, pid, fd in children:
            _collect(pid, fd)
        raise
    failure: BaseException | None = None
    for i, pid, fd in children:
        ok, value = _collect(pid, fd)
        if ok:
            results[i] = value
        elif value is _DIED:  # killed (the OOM killer, a signal) before it answered: its share again, here
            results[i] = work(shares[i])
        elif failure is None:
            failure = value
    if failure is not None:
        raise failure
    out: list[Any] = [None] * len(items)
    for i, share_results in results.items():
        out[i::n] = share_results
    return out


class Ahead:
    """A child running one piece of work (ahead)."""

    def __init__(self, pid: int, fd: int):
        self.pid, self.fd = pid, fd

    def result(self) -> Any | None:
        """What the work returned; None when it raised or the child died (the caller then does the
        work itself). Waits for the child."""
        ok, value = _collect(self.pid, self.fd)
        return value if ok else None


def ahead(work: Callable[[], Any]) -> Ahead | None:
    """work() started in a child while the caller goes on; None on one core, where there is no
    fork, or when no process could be had (the caller then does the work when it needs it). For
    work that only reads: what a child writes into its memory is lost with it."""
    if workers() < 2:
        return None
    try:
        return Ahead(*_fork(lambda _: work(), ()))
    except OSError:
        return None


def _fork(work: Callable[[Sequence[T]], list[Any]], share: Sequence[T]) -> tuple[int, int]:
    read, write = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read)
        os.close(write)
        raise
    if pid:
        os.close(write)
        return pid, read
    # the child: never returns into the caller's code
    status = 1
    try:
        os.close(read)
        try:
            payload = pickle.dumps((True, work(share)), protocol=pickle.HIGHEST_PROTOCOL)
        except BaseException as e:  # noqa: BLE001 - handed to the parent, which raises it
            try:
                payload = pickle.dumps((False, e), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:  # an exception that does not pickle: its text
                payload = pickle.dumps((False, RuntimeError(f"{type(e).__name__}: {e}")))
        with os.fdopen(write, "wb") as f:
            f.write(payload)
        status = 0
    finally:
        os._exit(status)


_DIED = object()


def _collect(pid: int, fd: int) -> tuple[bool, Any]:
    """(True, the child's results), (False, the exception it raised) or (False, _DIED)."""
    with os.fdopen(fd, "rb") as f:
        payload = f.read()
    os.waitpid(pid, 0)
    try:
        return pickle.loads(payload) if payload else (False, _DIED)
    except Exception:  # noqa: BLE001 - cut short mid-write
        return False, _DIED
