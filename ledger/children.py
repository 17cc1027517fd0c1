"""Helper processes that never outlive the process that started them.

The ledger's process pools (signing, verification) are forked: each child
holds a copy of the parent's open files, the database included. If the parent
is killed (SIGKILL runs no cleanup), orphaned children would keep the database
open and the pool's memory alive. Each child therefore asks Linux to send it
SIGTERM when its parent dies, and, where that is not available or the parent
died before the request took effect, watches its parent's pid itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
#: How often the fallback watcher looks at the parent pid, in seconds.
WATCH_INTERVAL = 0.5


def _request_death_signal() -> bool:
    """Linux: have the kernel send SIGTERM to this process when its parent exits."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(WATCH_INTERVAL)
    os._exit(0)  # orphaned: nothing of the parent's work is left to do


def parent_identity() -> tuple[int, bool]:
    """What a pool child needs to know of its parent: its pid, and whether the pool is
    being started from the main thread (see `die_with_parent`)."""
    return os.getpid(), threading.current_thread() is threading.main_thread()


def die_with_parent(parent_pid: int, forked_by_main_thread: bool = True) -> None:
    """Call first in a pool child: exit when the process `parent_pid` is gone.

    Linux delivers the death signal when the *thread* that forked the child
    exits, so it is only asked for when that thread is the main one (whose end
    is the process's end); a pool started from another thread relies on the
    parent-pid watcher alone.
    """
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler must not keep us alive
    if forked_by_main_thread:
        _request_death_signal()
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(0)
    threading.Thread(target=_watch, args=(parent_pid,), name="parent-watch", daemon=True).start()
