"""Break the server on purpose, one way at a time, and check a test notices.

Each mutation below is a small, deliberate bug: a regular expression finds
one distinctive piece of code (inside one function, so that code moving
around the file does not matter) and replaces it.  The tool copies the tree
to a scratch directory, applies one mutation there, and runs only the tests
that should catch it, bounded in time.  A mutation is

    caught      when those tests fail;
    survived    when they pass: the tests would let this bug through;
    not applied when its pattern no longer matches exactly once: the code
                moved on, and the mutation must be updated with it.

First the same tests run on the unmutated copy and must pass, or the rest
would prove nothing.  The exit status is non-zero unless every mutation was
applied and caught.  Run it with ``make mutations`` (not part of ``make test``)::

    python tests/mutations/run.py              # all of them
    python tests/mutations/run.py --list
    python tests/mutations/run.py keep-alive-fixed-5s head-search-quadratic
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import List, NamedTuple, Optional, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# One mutation's tests may take this long in all (pytest-timeout bounds each test).
RUN_TIMEOUT_S = 300


class Mutation(NamedTuple):
    name: str
    why: str          # the bug it stands for
    path: str         # relative to the repository
    function: str     # "name" or "Class.name": the pattern must match inside it ("" = whole file)
    pattern: str      # a regex that must match exactly once there
    replacement: str  # as for re.sub
    tests: Tuple[str, ...]


MUTATIONS = [
    Mutation(
        "wsgi-test-app-check",
        "a check inside a WSGI test app fails (the server only logs what an app raises)",
        "tests/unit/test_wsgi.py", "test_a_buffered_body_is_in_wsgi_input_before_the_app_runs",
        r"(\n( +)def app\(environ, start_response\):\n)", r"\1\2    assert False\n",
        ("tests/unit/test_wsgi.py::test_a_buffered_body_is_in_wsgi_input_before_the_app_runs",)),
    Mutation(
        "raise-on-byte-0x07",
        "the server raises on every read that contains byte 0x07 (about half of random clients)",
        "selectserver/connection.py", "Connection.on_readable",
        r"\n( +)if not data:\n",
        r'\n\1if b"\\x07" in data:\n\1    raise RuntimeError("mutation: a read with byte 0x07")\n'
        r"\1if not data:\n",
        ("tests/integration/test_hostile.py::test_many_clients_sending_garbage_concurrently",)),
    Mutation(
        "head-deadline-restarted",
        "the head deadline starts again on every read: a slowloris never times out",
        "selectserver/connection.py", "Connection.on_readable",
        # The general path's feed (an idle connection's first bytes take
        # their own): the one that the head's later bytes reach.
        r"\n( +)self\.parser\.feed\(data\)\n(\1if state is RUNNING )",
        r"\n\1self.parser.feed(data)\n"
        r"\1if self.state is READING_HEAD:\n"
        r"\1    self.deadline = _monotonic() + self.server.timeouts_s[READING_HEAD]\n\2",
        ("tests/integration/test_hostile.py::test_a_head_trickled_a_byte_at_a_time_gets_408_at_its_deadline",)),
    Mutation(
        "keep-alive-fixed-5s",
        "--timeout-keep-alive is ignored: idle connections always get 5 s",
        "selectserver/connection.py", "",
        r"\bIDLE: config\.timeout_keep_alive_s\b", "IDLE: 5.0",
        ("tests/integration/test_hostile.py::test_idle_connection_is_closed_after_keep_alive_timeout",)),
    Mutation(
        "head-search-quadratic",
        "the search for the head's end starts over on every byte (quadratic)",
        "selectserver/http11/parser.py", "RequestParser._incomplete_head",
        r"self\._searched = max\(0, received - 3\)", "self._searched = 0",
        ("tests/unit/test_parser.py::test_bytewise_head_is_linear_time",)),
    Mutation(
        "body-deadline-restarted",
        "the request body's deadline starts again on every read: a trickled body never times out",
        "selectserver/connection.py", "Connection.on_readable",
        r"self\.deadline \+= len\(data\) \* self\.server\.body_s_per_byte",
        "self.deadline = _monotonic() + self.server.body_timeout_s",
        ("tests/integration/test_hostile.py::test_a_body_trickled_a_byte_at_a_time_gets_408_at_its_deadline",)),
    Mutation(
        "tls-handshake-without-deadline",
        "a TLS handshake gets a minute instead of the head deadline",
        "selectserver/connection.py", "",
        r"\bHANDSHAKE: config\.timeout_request_head_s\b", "HANDSHAKE: 60.0",
        ("tests/integration/test_tls.py::test_a_handshake_that_stops_halfway_is_closed_at_its_deadline",)),
    Mutation(
        "proxy-trusts-every-peer",
        "proxy headers are believed from any peer, --forwarded-allow-ips or not",
        "selectserver/proxy.py", "TrustedProxies.trusts",
        r"if client is None or self\.trust_all:", "if True:",
        ("tests/integration/test_proxy.py",)),
    Mutation(
        "ttou-below-one-worker",
        "SIGTTOU can take the last worker away",
        "selectserver/master.py", "",
        r"if self\.target > 1:", "if self.target > 0:",
        ("tests/integration/test_signals.py::test_ttin_and_ttou_change_the_worker_count",)),
    Mutation(
        "server-thread-forgets-its-error",
        "ServerThread.stop() drops the exception that ended the server",
        "selectserver/worker.py", "ServerThread.stop",
        r"\n( +)if error is not None:\n +raise error\n", r"\n\1pass\n",
        ("tests/integration/test_harness.py",)),
    Mutation(
        "app-error-answered-200",
        "an ASGI app that raises before its response gets a 200 with no body",
        "selectserver/asgi.py", "HTTPCycle._ended",
        r"conn\.respond_error\(500\)", "conn.respond_error(200)",
        ("tests/integration/test_http.py::test_exception_before_start_is_a_500",)),
]


def function_span(source: str, function: str) -> Tuple[int, int]:
    """Where ``function`` ("name" or "Class.name") is in ``source``: (start, end)."""
    start, end, indent = 0, len(source), ""
    for name in function.split("."):
        definition = re.compile(r"^%s(?:async\s+def|def|class)\s+%s\b" % (indent, re.escape(name)), re.M)
        found = list(definition.finditer(source, start, end))
        if len(found) != 1:
            raise LookupError("%d definitions of %s" % (len(found), name))
        start = found[0].start()
        # The body is every following line that is blank or indented deeper.
        body = re.compile(r"^(?!%s[ \t]|[ \t]*$)" % indent, re.M)
        after = body.search(source, found[0].end() + 1, end)
        end = after.start() if after else end
        indent += "    "
    return start, end


def apply(tree: str, mutation: Mutation) -> None:
    """Apply ``mutation`` to the copy at ``tree``; LookupError if it does not fit the code."""
    path = os.path.join(tree, mutation.path)
    with open(path) as file:
        source = file.read()
    start, end = function_span(source, mutation.function) if mutation.function else (0, len(source))
    part, count = re.subn(mutation.pattern, mutation.replacement, source[start:end])
    if count != 1:
        raise LookupError("the pattern matches %d times in %s" % (count, mutation.function or mutation.path))
    with open(path, "w") as file:
        file.write(source[:start] + part + source[end:])


def copy_tree(destination: str) -> str:
    """The working tree as it is (edits included), without .git and virtualenvs."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, check=True, capture_output=True, text=True).stdout.splitlines()
    for name in files:
        source = os.path.join(REPO, name)
        if not os.path.isfile(source):
            continue   # deleted in the working tree
        target = os.path.join(destination, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(source, target)
    return destination


def run_tests(tree: str, tests: Tuple[str, ...]) -> Tuple[str, str, float]:
    """Run ``tests`` in ``tree``: ("passed" | "failed" | "broken" | "timed out", output tail, seconds)."""
    environment = dict(os.environ, PYTHONPATH=tree, PYTHONDONTWRITEBYTECODE="1")
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-o", "timeout=60",
               *tests]
    started = time.monotonic()
    try:
        result = subprocess.run(command, cwd=tree, env=environment, capture_output=True, text=True,
                                timeout=RUN_TIMEOUT_S, start_new_session=True)
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout or ""
        return "timed out", output if isinstance(output, str) else output.decode(), time.monotonic() - started
    seconds = time.monotonic() - started
    tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
    # pytest: 0 all passed, 1 some failed; anything else (collection error,
    # usage error, no tests collected) means the run itself went wrong.
    outcome = {0: "passed", 1: "failed"}.get(result.returncode, "broken")
    return outcome, tail, seconds


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="only these mutations (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the test output of each run")
    options = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if not options.names or m.name in options.names]
    unknown = set(options.names) - {m.name for m in MUTATIONS}
    if unknown:
        parser.error("no such mutation: %s" % ", ".join(sorted(unknown)))
    if options.list:
        for mutation in MUTATIONS:
            print("%-32s %s" % (mutation.name, mutation.why))
        return 0

    with tempfile.TemporaryDirectory(prefix="selectserver-mutations-") as scratch:
        pristine = copy_tree(os.path.join(scratch, "pristine"))
        all_tests = tuple(sorted({test for mutation in chosen for test in mutation.tests}))
        outcome, tail, seconds = run_tests(pristine, all_tests)
        print("baseline: the chosen tests on the unmutated tree %s (%.1f s)" % (outcome, seconds))
        if outcome != "passed":
            print(tail)
            return 2
        results = []
        for mutation in chosen:
            tree = os.path.join(scratch, mutation.name)
            shutil.copytree(pristine, tree)
            try:
                apply(tree, mutation)
            except LookupError as exc:
                verdict, tail, seconds = "NOT APPLIED", str(exc), 0.0
            else:
                outcome, tail, seconds = run_tests(tree, mutation.tests)
                verdict = {"failed": "caught", "timed out": "caught (timed out)",
                           "passed": "SURVIVED", "broken": "BROKEN"}[outcome]
            shutil.rmtree(tree, ignore_errors=True)
            results.append((mutation, verdict))
            print("%-20s %-32s %5.1f s  %s" % (verdict, mutation.name, seconds, mutation.why))
            if options.verbose or verdict in ("NOT APPLIED", "BROKEN"):
                print("    " + tail.replace("\n", "\n    "))
    bad = [mutation.name for mutation, verdict in results if not verdict.startswith("caught")]
    print("%d of %d mutations caught%s" % (len(results) - len(bad), len(results),
                                           "; not caught: " + ", ".join(bad) if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
