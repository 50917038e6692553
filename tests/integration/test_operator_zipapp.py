"""`make zipapp`: the server as one file that runs on an interpreter with
nothing installed (-I -S: no site-packages, no environment, no current
directory on the path)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from .processes import REPO, ServerProcess, get, write_app

pytestmark = [pytest.mark.skipif(not hasattr(os, "fork"), reason="the master forks"),
              pytest.mark.skipif(shutil.which("make") is None, reason="needs make")]


@pytest.fixture(scope="module")
def zipapp(tmp_path_factory):
    target = str(tmp_path_factory.mktemp("zipapp") / "selectserver.pyz")
    result = subprocess.run(["make", "-s", "zipapp", "ZIPAPP=" + target, "PYTHON=" + sys.executable],
                            cwd=REPO, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    return target


def other_interpreters():
    """Bare interpreters besides this one: pyenv's oldest CPython, PyPy."""
    found = []
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    versions = os.path.join(root, "versions")
    if os.path.isdir(versions):
        for version in sorted(os.listdir(versions)):
            if version.startswith("3.9."):
                found.append(os.path.join(versions, version, "bin", "python3"))
                break
    if shutil.which("pypy3"):
        found.append(shutil.which("pypy3"))
    return [path for path in found if os.access(path, os.X_OK)]


@pytest.mark.parametrize("interpreter", [sys.executable] + other_interpreters())
def test_zipapp_serves_on_a_clean_interpreter(zipapp, tmp_path, interpreter):
    app_dir = tmp_path / "site"
    app_dir.mkdir()
    write_app(str(app_dir))
    server = ServerProcess([], argv=[interpreter, "-I", "-S", zipapp, "procapp:app",
                                     "--app-dir", str(app_dir), "--port", "0"],
                           cwd=str(tmp_path))
    try:
        assert get(server.address, "/version") == (200, "v1")
    finally:
        server.kill()


def test_zipapp_holds_only_the_package(zipapp):
    import zipfile

    names = zipfile.ZipFile(zipapp).namelist()
    assert "__main__.py" in names and "selectserver/cli.py" in names
    assert not [name for name in names if "__pycache__" in name or name.startswith("tests/")]
