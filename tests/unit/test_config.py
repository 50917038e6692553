"""Where options come from: the command line, the environment, -c FILE,
pyproject.toml and --env-file, and which one wins."""

from __future__ import annotations

import sys

import pytest

from selectserver import cli
from selectserver.config import Config, ConfigError, flag, parse_header


@pytest.fixture(autouse=True)
def _no_pyproject_here(tmp_path, monkeypatch):
    # config_from_args() reads ./pyproject.toml: not the repository's.
    monkeypatch.chdir(tmp_path)


def load(argv, environ=None):
    return cli.config_from_args(argv, environ={} if environ is None else environ)


def write(path, text):
    path.write_text(text)
    return str(path)


def test_defaults_without_any_source():
    config = load(["app:app"])
    assert (config.port, config.workers, config.uds_permissions) == (8000, 1, 0o666)


def test_every_option_has_a_variable():
    config = load(["app:app"], {"SELECTSERVER_PORT": "9001", "SELECTSERVER_TIMEOUT_KEEP_ALIVE": "7.5",
                                "SELECTSERVER_PROXY_HEADERS": "off", "SELECTSERVER_RELOAD": "yes",
                                "SELECTSERVER_BIND": "unix:/tmp/a.sock, 127.0.0.1:9",
                                "SELECTSERVER_UMASK": "027", "SELECTSERVER_LOG_LEVEL": "debug"})
    assert config.port == 9001
    assert config.timeout_keep_alive_s == 7.5
    assert config.proxy_headers is False and config.reload is True
    assert config.binds == ["unix:/tmp/a.sock", "127.0.0.1:9"]
    assert config.umask == 0o27 and config.log_level == "debug"


def test_the_app_can_come_from_the_environment():
    assert load([], {"SELECTSERVER_APP": "pkg.mod:app"}).app == "pkg.mod:app"


def test_headers_from_the_environment_are_one_a_line():
    config = load(["app:app"], {"SELECTSERVER_HEADER": "x-a: 1, 2\nx-b: 3"})
    assert config.headers == ["x-a: 1, 2", "x-b: 3"]


def test_other_servers_variables():
    config = load(["app:app"], {"WEB_CONCURRENCY": "3", "FORWARDED_ALLOW_IPS": "10.0.0.1"})
    assert (config.workers, config.forwarded_allow_ips) == (3, "10.0.0.1")
    # Our own name wins over the alias.
    assert load(["app:app"], {"WEB_CONCURRENCY": "3", "SELECTSERVER_WORKERS": "2"}).workers == 2


@pytest.mark.parametrize("variable, value, expected", [
    ("WEB_CONCURRENCY", "abc", "WEB_CONCURRENCY: 'abc' is not a valid --workers: expected a whole number"),
    ("SELECTSERVER_PORT", "80.5", "SELECTSERVER_PORT"),
    ("SELECTSERVER_LOOP", "uvloop", "expected one of selectserver, asyncio"),
    ("SELECTSERVER_ACCESS_LOG", "maybe", "SELECTSERVER_ACCESS_LOG"),
    ("SELECTSERVER_UDS_PERMISSIONS", "rw", "expected an octal mode"),
])
def test_a_wrong_variable_is_named(variable, value, expected):
    with pytest.raises(ConfigError) as error:
        load(["app:app"], {variable: value})
    assert expected in str(error.value)


def test_command_line_over_environment_over_file_over_pyproject(tmp_path):
    write(tmp_path / "pyproject.toml", '[tool.selectserver]\nport = 1001\nworkers = 2\n'
                                       'backlog = 11\nthreads = 4\n')
    conf = write(tmp_path / "conf.py", "port = 1002\nworkers = 3\nbacklog = 12\n")
    environ = {"SELECTSERVER_PORT": "1003", "SELECTSERVER_WORKERS": "4"}
    config = load(["app:app", "-c", conf, "--port", "1004"], environ)
    assert config.port == 1004                 # command line
    assert config.workers == 4                 # environment
    assert config.backlog == 12                # -c FILE
    if sys.version_info >= (3, 11):
        assert config.threads == 4             # pyproject
    else:
        assert config.threads == 10            # no tomllib: the table is ignored


def test_config_file_takes_python_values_and_both_names(tmp_path):
    conf = write(tmp_path / "conf.py", (
        "import multiprocessing\n"
        "_cores = 2\n"
        "app = 'mod:app'\n"
        "workers = _cores * 2\n"
        "bind = ['127.0.0.1:9000', 'unix:/tmp/x.sock']\n"
        "timeout_keep_alive_s = 3\n"          # the field's name
        "limit_request_body = 1024\n"         # the flag's name
        "umask = 0o22\n"
        "header = ['x-frame-options: DENY']\n"
        "access_log = False\n"))
    config = load(["-c", conf])
    assert config.app == "mod:app" and config.workers == 4
    assert config.binds == ["127.0.0.1:9000", "unix:/tmp/x.sock"]
    assert config.timeout_keep_alive_s == 3 and config.limit_request_body_bytes == 1024
    assert config.umask == 0o22 and config.headers == ["x-frame-options: DENY"]
    assert config.access_log is False


@pytest.mark.parametrize("text, expected", [
    ("wrokers = 2\n", "unknown option 'wrokers'"),
    ("workers = 'two'\n", "workers: 'two' is not a valid --workers"),
    ("workers = (\n", "SyntaxError"),
    ("raise RuntimeError('nope')\n", "RuntimeError: nope"),
])
def test_a_bad_config_file_is_named(tmp_path, text, expected):
    conf = write(tmp_path / "conf.py", text)
    with pytest.raises(ConfigError) as error:
        load(["app:app", "-c", conf])
    assert conf in str(error.value) and expected in str(error.value)


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")
def test_pyproject_unknown_key_is_named(tmp_path):
    write(tmp_path / "pyproject.toml", "[tool.selectserver]\nprot = 1\n")
    with pytest.raises(ConfigError, match="pyproject.toml.*'prot'"):
        load(["app:app"])


def test_env_file_syntax(tmp_path):
    path = write(tmp_path / ".env", (
        "# a comment\n"
        "\n"
        "PLAIN=value # trailing comment\n"
        "export EXPORTED=yes\n"
        "SINGLE='a $b \\n # c'\n"
        'DOUBLE="line1\\nline2 \\"q\\""\n'
        "EMPTY=\n"
        "SPACED = x y \n"))
    assert cli.read_env_file(path) == {
        "PLAIN": "value", "EXPORTED": "yes", "SINGLE": "a $b \\n # c",
        "DOUBLE": 'line1\nline2 "q"', "EMPTY": "", "SPACED": "x y"}


@pytest.mark.parametrize("line", ["NO_EQUALS\n", "1ABC=x\n", "A='open\n", 'B="x" y\n'])
def test_env_file_errors_give_the_line(tmp_path, line):
    path = write(tmp_path / ".env", "OK=1\n" + line)
    with pytest.raises(ConfigError, match="line 2"):
        cli.read_env_file(path)


def test_env_file_feeds_the_environment_and_the_options(tmp_path):
    path = write(tmp_path / ".env", "SELECTSERVER_PORT=1234\nDATABASE_URL=x\nALREADY=file\n")
    environ = {"ALREADY": "set"}
    config = load(["app:app", "--env-file", path], environ)
    assert config.port == 1234
    assert environ["DATABASE_URL"] == "x" and environ["ALREADY"] == "set"


def test_a_bad_flag_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.build_parser().parse_args(["app:app", "--prot", "1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "unrecognized arguments: --prot" in err and "--help" in err


def test_missing_app_is_reported():
    with pytest.raises(ConfigError, match="APP"):
        load([])


def test_new_flags():
    config = load(["app:app", "--header", "x-a: 1", "--header", "x-b:2", "--no-server-header",
                   "--no-date-header", "--user", "nobody", "--group", "nogroup", "--chdir", "/",
                   "--umask", "077", "--preload", "--access-logfile", "-",
                   "--error-logfile", "/tmp/e.log", "--uds-permissions", "660"])
    assert config.headers == ["x-a: 1", "x-b:2"]
    assert not config.server_header and not config.date_header
    assert (config.user, config.group, config.chdir, config.umask) == ("nobody", "nogroup", "/", 0o77)
    assert config.preload and config.uds_permissions == 0o660
    assert (config.access_logfile, config.error_logfile) == ("-", "/tmp/e.log")


@pytest.mark.parametrize("text", ["no colon", "bad name: x", ": empty", "x-a: a\rb", "x-a: \x00"])
def test_bad_header_is_refused(text):
    with pytest.raises(ConfigError, match="--header"):
        Config(app="a:b", headers=[text])


def test_header_parsing():
    assert parse_header("X-Frame-Options:  DENY ") == (b"x-frame-options", b"DENY")


def test_messages_use_the_flags():
    assert flag("timeout_keep_alive_s") == "--timeout-keep-alive"
    assert flag("limit_request_header_bytes") == "--limit-request-headers"
    assert flag("binds") == "--bind"
    with pytest.raises(ConfigError, match="--ssl-keyfile needs --ssl-certfile"):
        Config(app="a:b", ssl_keyfile="key.pem")
    with pytest.raises(ConfigError, match="--timeout-keep-alive must be positive"):
        Config(app="a:b", timeout_keep_alive_s=0)


def test_every_flag_maps_to_a_config_field():
    fields = set(Config.__dataclass_fields__)
    assert {field for _, field, _ in cli.OPTIONS} <= fields
