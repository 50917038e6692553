"""The exercises (docs/tutorial/exercises.md) give the output to expect;
here each one is run against the real server and its output is compared
with the excerpts the page shows.

An excerpt is a block after ``<!-- expect: EXERCISE/SIDE -->`` (SIDE is
``server`` or ``client``).  Its lines must appear in the output in order and
next to each other, except where a line ``...`` stands for any lines.  Every
number matches any number (ports, pids, file descriptors, timings differ
from run to run).
"""

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.tutorial.excerpts import find_excerpt
from tests.tutorial.test_steps import TUTORIAL, load

ROOT = os.path.dirname(TUTORIAL.rstrip(os.sep).rsplit(os.sep, 1)[0])
PAGE = os.path.join(TUTORIAL, "exercises.md")
EXPECT = re.compile(r"<!-- expect: (\S+)/(server|client) -->\n```text\n(.*?)```", re.S)

tour = load("tour")


def excerpts():
    with open(PAGE) as file:
        return {(name, side): block.splitlines() for name, side, block in EXPECT.findall(file.read())}


def server(*args):
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=ROOT)
    return tour.Step(None, argv=[sys.executable, "-m", "selectserver", *args, "--port", "0"],
                     cwd=ROOT, env=env)


def client(address, *args):
    command = [sys.executable, os.path.join(TUTORIAL, "clients.py"), args[0],
               "%s:%d" % address] + list(args[1:])
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            timeout=tour.PATIENCE_S, check=True)
    return result.stdout.decode().splitlines()


def run_slowloris():
    with server("selectserver.demo:app", "--timeout-request-head", "1", "--trace") as running:
        said = client(running.address, "slowloris")
        running.wait_for_line("lingering -> closed")
        return running.lines[:-1] if running.lines[-1] is None else list(running.lines), said


def run_pipeline():
    with server("selectserver.demo:app", "--trace") as running:
        said = client(running.address, "pipeline", "3")
        running.wait_for_line("idle -> closed")
        return list(running.lines), said


def run_no_read():
    with server("--app-dir", TUTORIAL, "apps:app", "--lifespan", "off", "--no-access-log") as running:
        proc = subprocess.Popen([sys.executable, os.path.join(TUTORIAL, "clients.py"), "no-read",
                                 "%s:%d" % running.address, "64", "1"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            assert proc.stdout.readline().startswith(b"asked for 64 MiB")
            assert proc.stdout.readline() == b"now reading\n"
            # While the client read nothing, the app got no further than the
            # buffers allow (a few MiB); without backpressure it would be done.
            reached = [int(line.split()[1]) for line in running.lines if line and line.startswith("app:")]
            assert not reached or max(reached) <= 16, reached
            rest = proc.stdout.read().decode().splitlines()
            assert proc.wait(tour.PATIENCE_S) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        running.wait_for_line("app: 64 MiB")
        said = ["asked for 64 MiB; reading nothing for 1 s", "now reading"] + rest
        return list(running.lines), said


def run_kill_worker():
    with server("selectserver.demo:app", "--workers", "2") as running:
        first = running.wait_for_line(" serving")
        running.wait_for_line(" serving", after=running.lines.index(first) + 1)
        pid = int(re.search(r"Worker (\d+) serving", first).group(1))
        os.kill(pid, signal.SIGKILL)
        died = running.wait_for_line("Worker %d died" % pid)
        running.wait_for_line(" serving", after=running.lines.index(died) + 1)
        return list(running.lines), ["kill -9 %d" % pid]


RUNS = {"slowloris": run_slowloris, "pipeline": run_pipeline, "no-read": run_no_read,
        "kill-worker": run_kill_worker}


def test_every_exercise_has_a_run_and_an_excerpt():
    assert {name for name, _ in excerpts()} == set(RUNS)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_exercise_output_matches_the_page(name):
    server_lines, client_lines = RUNS[name]()
    server_lines = [line for line in server_lines if line is not None]
    print("\n".join(server_lines + ["-- client --"] + client_lines))
    for (exercise, side), excerpt in excerpts().items():
        if exercise == name:
            find_excerpt(excerpt, server_lines if side == "server" else client_lines)
