"""The lifecycle bar, small: reloads, recycling and stops lose no request.

``benchmarks/reload_bar.py`` runs it at full size (``make reload-bar``);
here each case runs for a second or two against ``--workers 2``: ab with
keep-alive and ``--max-requests 1000`` under a SIGHUP every 0.4 s, wrk's 64
connections under the same SIGHUPs, and SIGTERM under keep-alive load.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from benchmarks import reload_bar  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the master forks")

SIZE = reload_bar.SIZES["test"]


def run(interface, case):
    result = reload_bar.run_case(interface, case, SIZE)
    assert result["log_errors"] == 0, result
    return result


@pytest.mark.requires_program("ab")
@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_ab_keep_alive_through_reloads_and_recycling_loses_nothing(interface):
    result = run(interface, "ab-max")
    assert result["sighups"] >= 1, result
    assert result["complete"] == result["requests"], result
    assert result["failed"] == 0 and result["non_2xx"] == 0 and result["ab_exit"] == 0, result


@pytest.mark.requires_program("wrk")
@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_wrk_through_reloads_has_no_socket_errors(interface):
    result = run(interface, "wrk")
    assert result["sighups"] >= 2 and result["requests"] > 0, result
    errors = {key: result[key] for key in ("connect_errors", "read_errors", "write_errors", "timeouts")}
    assert errors == dict.fromkeys(errors, 0), result
    assert result["non_2xx"] == 0, result


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_sigterm_under_load_answers_every_request_and_refuses_new_connections(interface):
    result = run(interface, "stop")
    assert result["lost"] == 0, result
    assert result["slow_answered"] > 0, result
    assert result["late_connection"] == "refused", result
    assert result["exit_code"] == 0, result
