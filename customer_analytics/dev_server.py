"""`make dev`: `dagster dev` that stops on SIGTERM or SIGINT (Ctrl-C) within seconds, leaving nothing behind.

    python -m customer_analytics.dev_server -w workspace.yaml -h 127.0.0.1 -p 3000

Why a wrapper: `dagster dev` maps SIGTERM to whatever SIGINT does, and a shell that is not interactive
starts background jobs with SIGINT ignored; `dagster dev`, its webserver and daemon then ignore both
signals and their shutdown messages (each one interrupts itself with SIGINT), and they and the code
servers run on, their sockets left in the temp folder. Here SIGINT and SIGTERM have handlers, which a
child's exec resets to the default, so `dagster dev` and its processes can always be interrupted.

On the first SIGINT or SIGTERM the wrapper sends `dagster dev` one SIGINT (its own orderly shutdown:
webserver, daemon, code servers, sockets) and waits up to GRACE_SECONDS for every process of its
process group to end; whatever is left then (or at once on a second signal) is killed. `dagster dev`
runs in its own session, so a terminal's Ctrl-C reaches it only through the wrapper, once: a second
SIGINT would break `dagster dev`'s own shutdown half way. Exit status: 0 when everything stopped on
request, 1 when something had to be killed, else `dagster dev`'s own.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

GRACE_SECONDS = 8.0  # dagster dev stops in about 2 s here; the bound is 10 s from the signal
POLL_SECONDS = 0.1


def _dagster() -> str:
    beside = Path(sys.executable).parent / "dagster"  # the venv's, as the Makefile's other commands
    return str(beside) if beside.exists() else (shutil.which("dagster") or "dagster")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of the group exists, only not ours to signal
        return True
    return True


def _wait_group(process: subprocess.Popen, deadline: float) -> bool:
    """Until `deadline`: True once `dagster dev` has exited and no process of its group is left."""
    while time.monotonic() < deadline:
        if process.poll() is not None and not _group_alive(process.pid):
            return True
        time.sleep(POLL_SECONDS)
    return process.poll() is not None and not _group_alive(process.pid)


def main(argv: list[str] | None = None) -> int:
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signo, _frame: received.append(signo))
    signal.signal(signal.SIGTERM, lambda signo, _frame: received.append(signo))
    process = subprocess.Popen([_dagster(), "dev", *(sys.argv[1:] if argv is None else argv)],
                               start_new_session=True)
    pgid = process.pid  # a new session: its own process group, which its children share
    while process.poll() is None and not received:
        time.sleep(POLL_SECONDS)
    if not received:  # dagster dev ended by itself: take down what it left running
        stopped = _wait_group(process, time.monotonic() + GRACE_SECONDS)
    else:
        print(f"dev_server: {signal.Signals(received[0]).name} received, stopping dagster dev "
              f"(up to {GRACE_SECONDS:.0f} s)", file=sys.stderr, flush=True)
        process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + GRACE_SECONDS
        stopped = False
        while time.monotonic() < deadline and len(received) < 2:
            if _wait_group(process, min(deadline, time.monotonic() + POLL_SECONDS)):
                stopped = True
                break
    if not stopped:
        print("dev_server: processes of dagster dev still running: killing them", file=sys.stderr, flush=True)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        return 1
    return 0 if received else (process.returncode or 0)


if __name__ == "__main__":
    sys.exit(main())
