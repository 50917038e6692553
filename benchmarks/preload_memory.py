"""What --preload does to the workers' memory: RSS and PSS per worker, with
and without it, read from /proc/PID/smaps_rollup (Linux).

    python3 benchmarks/preload_memory.py [--workers 4] [--app MODULE:APP]

PSS (proportional set size) divides each shared page among the processes
that share it, so it shows what copy-on-write saves; RSS counts shared
pages in full in every process.  The default app imports FastAPI
(pydantic, starlette): a typical import-heavy app.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

APP = '''
from fastapi import FastAPI
app = FastAPI()

@app.get("/")
def root():
    return {"ok": True}
'''


def rollup(pid: int) -> dict:
    values = {}
    with open("/proc/%d/smaps_rollup" % pid) as file:
        for line in file:
            match = re.match(r"(\w+):\s+(\d+) kB", line)
            if match:
                values[match.group(1)] = int(match.group(2))
    return values


def children(pid: int) -> list:
    with open("/proc/%d/task/%d/children" % (pid, pid)) as file:
        return [int(child) for child in file.read().split()]


def measure(app_dir: str, app: str, workers: int, preload: bool) -> tuple:
    command = [sys.executable, "-m", "selectserver", app, "--app-dir", app_dir, "--port", "0",
               "--workers", str(workers), "--no-access-log"] + (["--preload"] if preload else [])
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        serving = 0
        for line in proc.stderr:
            serving += " serving" in line
            if serving == workers:
                break
        time.sleep(1.0)   # let the workers settle after their first tick
        master = rollup(proc.pid)
        per_worker = [rollup(pid) for pid in children(proc.pid)]
    finally:
        proc.terminate()
        proc.wait(30)
    rss = sum(w["Rss"] for w in per_worker) / len(per_worker)
    pss = sum(w["Pss"] for w in per_worker) / len(per_worker)
    total_pss = master["Pss"] + sum(w["Pss"] for w in per_worker)
    return master["Rss"], rss, pss, total_pss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--app", default=None)
    args = parser.parse_args()
    import tempfile

    directory = tempfile.mkdtemp()
    app = args.app
    if app is None:
        with open(os.path.join(directory, "preload_app.py"), "w") as file:
            file.write(APP)
        app = "preload_app:app"
    print("%d workers, %s, %s %s" % (args.workers, app, sys.implementation.name,
                                     sys.version.split()[0]))
    print("%-12s %12s %14s %14s %16s" % ("", "master RSS", "worker RSS", "worker PSS", "total PSS"))
    for preload in (False, True):
        master_rss, rss, pss, total = measure(directory, app, args.workers, preload)
        print("%-12s %9.1f MiB %11.1f MiB %11.1f MiB %13.1f MiB" % (
            "--preload" if preload else "default", master_rss / 1024, rss / 1024, pss / 1024,
            total / 1024))


if __name__ == "__main__":
    main()
