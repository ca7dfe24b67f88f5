"""Run the example project's web server and worker together; Ctrl-C stops both cleanly.

The worker gets the signal too, finishes its running jobs (or releases them
after its shutdown timeout) and exits; this script waits for both.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    port = os.environ.get("DEMO_PORT", "8000")
    manage = [sys.executable, str(HERE / "manage.py")]
    # Own sessions: a terminal's Ctrl-C reaches only this script, which forwards it
    # once. (Were the children in the terminal's process group too, the worker would
    # get the signal twice, and a second signal means "stop now".)
    processes = {
        "web": subprocess.Popen(
            [*manage, "runserver", f"127.0.0.1:{port}", "--noreload"], start_new_session=True
        ),
        "worker": subprocess.Popen(
            # --reload: restarted on a code change, as runserver would be.
            [*manage, "runworker", "--reload", "--shutdown-timeout", "10"],
            start_new_session=True,
        ),
    }
    print(f"\nDemo running: http://127.0.0.1:{port}/  (Ctrl-C stops web and worker)\n", flush=True)

    def forward(signum: int, frame: object) -> None:
        print("\nStopping: the worker finishes its running jobs first...", flush=True)
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        while all(process.poll() is None for process in processes.values()):
            time.sleep(0.2)
    finally:
        for process in processes.values():  # one stopped on its own: stop the other too
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in processes.items():
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            print(f"{name} stopped (exit code {code})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
