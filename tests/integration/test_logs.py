"""Access lines and --log-config from a real server process."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest

from .processes import ServerProcess, app_dir, get, wait_until  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the master forks")


def test_access_log_format(app_dir):
    server = ServerProcess(["procapp:app", "--app-dir", app_dir, "--port", "0", "--access-log-format",
                            '%(h)s "%(r)s" %(s)s %(b)s "%({user-agent}i)s" %({x-version}o)s %(M)sms'])
    try:
        get(server.address, "/version?q=1", headers={"User-Agent": 'evil"\tagent'})
        wait_until(lambda: any("/version" in line for line in server.output), message="an access line")
        line = [line for line in server.output if "/version" in line][0]
        assert re.match(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] \[\d+\] \[INFO\] "
                        r"127\.0\.0\.1 \"GET /version\?q=1 HTTP/1\.1\" 200 2 ", line), line
        assert '"evil\\x22\\x09agent" v1 ' in line
        assert line.rstrip().endswith("ms")
    finally:
        server.kill()


def test_no_access_log(app_dir):
    server = ServerProcess(["procapp:app", "--app-dir", app_dir, "--port", "0", "--no-access-log"])
    try:
        for _ in range(3):
            get(server.address)
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        assert server.output == []
    finally:
        server.kill()


def test_json_log_config(app_dir, tmp_path):
    access = tmp_path / "access.log"
    config = tmp_path / "logging.json"
    config.write_text(json.dumps({
        "version": 1,
        "formatters": {"plain": {"format": "%(name)s %(levelname)s %(message)s"}},
        "handlers": {
            "access": {"class": "logging.FileHandler", "filename": str(access), "formatter": "plain"},
            "errors": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr", "formatter": "plain"},
        },
        "loggers": {
            "selectserver.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "selectserver.error": {"handlers": ["errors"], "level": "INFO", "propagate": False},
        },
    }))
    server = ServerProcess(["procapp:app", "--app-dir", app_dir, "--port", "0", "--log-config", str(config)])
    try:
        assert "selectserver.error INFO Listening on" in server.log()
        get(server.address, "/logged")
        wait_until(lambda: access.exists() and "/logged" in access.read_text(), message="the access file")
        assert access.read_text().startswith('selectserver.access INFO 127.0.0.1 - "GET /logged HTTP/1.1" 200')
    finally:
        server.kill()
