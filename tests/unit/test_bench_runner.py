"""The benchmark runner imports and reads wrk's and ab's reports (no network, no peers).

The samples are real outputs of wrk 4.1.0 and ab 2.3 on this project's machine: a clean run,
one with read errors, one with non-2xx answers, one with pipelined requests (no latency
samples), and ab with and without failed requests.
"""
import importlib.util
import os
import sys

import pytest

RUN_PY = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "benchmarks", "run.py")


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("benchmarks_run", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # dataclasses look their module up while it loads
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


WRK_CLEAN = """\
Running 2s test @ http://127.0.0.1:40215/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.24ms  379.50us   8.46ms   91.13%
    Req/Sec    27.67k     1.05k   29.26k    82.00%
  Latency Distribution
     50%    2.24ms
     75%    2.39ms
     90%    2.84ms
     99%    4.72ms
  55066 requests in 2.00s, 7.72MB read
Requests/sec:  27533.12
Transfer/sec:      3.86MB
"""

WRK_READ_ERRORS = """\
Running 2s test @ http://127.0.0.1:18771/
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.97ms    2.88ms  21.31ms   85.30%
    Req/Sec     4.75k     2.82k   15.30k    90.48%
  Latency Distribution
     50%  266.00us
     75%    3.13ms
     90%    6.09ms
     99%   12.01ms
  9949 requests in 2.10s, 388.63KB read
  Socket errors: connect 0, read 4232, write 0, timeout 0
Requests/sec:   4737.31
Transfer/sec:    185.05KB
"""

WRK_NON_2XX = """\
Running 1s test @ http://127.0.0.1:18765/missing
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     6.93ms    4.79ms  20.56ms   58.74%
    Req/Sec   593.18    241.10     1.01k    54.55%
  Latency Distribution
     50%    6.22ms
     75%    9.98ms
     90%   14.64ms
     99%   16.65ms
  649 requests in 1.10s, 329.75KB read
  Non-2xx or 3xx responses: 649
Requests/sec:    589.82
Transfer/sec:    299.68KB
"""

WRK_PIPELINED = """\
Running 2s test @ http://127.0.0.1:51113/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    35.16ms   55.29ms 209.31ms    0.00%
    Req/Sec     6.47k   382.87     7.51k    85.00%
  Latency Distribution
     50%    0.00us
     75%    0.00us
     90%    0.00us
     99%    0.00us
  12876 requests in 2.01s, 1.93MB read
Requests/sec:   6410.91
Transfer/sec:      0.96MB
"""

AB_TAIL = """
Connection Times (ms)
              min  mean[+/-sd] median   max
Connect:        0    0   0.0      0       0
Processing:     0    5   5.2      3      16
Waiting:        0    5   5.2      3      16
Total:          0    5   5.2      3      16

Percentage of the requests served within a certain time (ms)
  50%      3
  66%      7
  75%      9
  80%     12
  90%     13
  95%     16
  98%     16
  99%     16
 100%     16 (longest request)
"""

AB_CLEAN = """\
This is ApacheBench, Version 2.3 <$Revision$>

Server Software:        SimpleHTTP/0.6
Server Hostname:        127.0.0.1
Server Port:            18765

Document Path:          /
Document Length:        187 bytes

Concurrency Level:      4
Time taken for tests:   1.000 seconds
Complete requests:      799
Failed requests:        0
Total transferred:      273258 bytes
HTML transferred:       149413 bytes
Requests per second:    798.98 [#/sec] (mean)
Time per request:       5.006 [ms] (mean)
Time per request:       1.252 [ms] (mean, across all concurrent requests)
Transfer rate:          266.85 [Kbytes/sec] received
""" + AB_TAIL

AB_FAILED = """\
Concurrency Level:      4
Time taken for tests:   1.000 seconds
Complete requests:      772
Failed requests:        627
   (Connect: 0, Receive: 0, Length: 627, Exceptions: 0)
Non-2xx responses:      12
Total transferred:      31692 bytes
HTML transferred:       2356 bytes
Requests per second:    771.96 [#/sec] (mean)
Time per request:       5.182 [ms] (mean)
Time per request:       1.295 [ms] (mean, across all concurrent requests)
Transfer rate:          30.95 [Kbytes/sec] received
""" + AB_TAIL


def test_wrk_clean_run(run):
    result = run.parse_wrk(WRK_CLEAN)
    assert result["requests"] == 55066
    assert result["seconds"] == pytest.approx(2.0)
    assert result["rps"] == pytest.approx(27533.12)
    assert result["bytes_read"] == pytest.approx(7.72 * 1024 ** 2)
    assert result["latency_avg_s"] == pytest.approx(2.24e-3)
    assert result["latency_max_s"] == pytest.approx(8.46e-3)
    assert result["latency_percentiles_s"] == pytest.approx(
        {50: 2.24e-3, 75: 2.39e-3, 90: 2.84e-3, 99: 4.72e-3})
    assert result["errors"] == {"connect": 0, "read": 0, "write": 0, "timeout": 0}
    assert result["non_2xx_3xx"] == 0
    assert run.run_errors(result) == ""


def test_wrk_socket_errors_make_the_run_invalid(run):
    result = run.parse_wrk(WRK_READ_ERRORS)
    assert result["errors"] == {"connect": 0, "read": 4232, "write": 0, "timeout": 0}
    assert result["latency_percentiles_s"][50] == pytest.approx(266e-6)
    assert run.run_errors(result) == "read 4232"


def test_wrk_non_2xx_makes_the_run_invalid(run):
    result = run.parse_wrk(WRK_NON_2XX)
    assert result["non_2xx_3xx"] == 649
    assert result["bytes_read"] == pytest.approx(329.75 * 1024)
    assert run.run_errors(result) == "non-2xx/3xx 649"


def test_wrk_pipelined_run_has_no_latency_percentiles(run):
    result = run.parse_wrk(WRK_PIPELINED)
    assert result["requests"] == 12876
    assert result["latency_percentiles_s"] == {}


def test_wrk_without_a_summary_is_an_error(run):
    with pytest.raises(ValueError):
        run.parse_wrk("unable to connect to 127.0.0.1:18766 Connection refused\n")


def test_ab_clean_run(run):
    result = run.parse_ab(AB_CLEAN)
    assert result["requests"] == 799
    assert result["rps"] == pytest.approx(798.98)
    assert result["latency_avg_s"] == pytest.approx(5.006e-3)
    assert result["latency_percentiles_s"][50] == pytest.approx(3e-3)
    assert result["latency_max_s"] == pytest.approx(16e-3)
    assert run.run_errors(result) == ""


def test_ab_failed_requests_make_the_run_invalid(run):
    result = run.parse_ab(AB_FAILED)
    assert result["errors"]["failed"] == 627
    assert result["errors"]["length"] == 627
    assert result["non_2xx_3xx"] == 12
    assert run.run_errors(result) == "failed 627, length 627, non-2xx/3xx 12"


def test_summary_quotes_no_invalid_run(run):
    good = dict(run.parse_wrk(WRK_CLEAN), cpu_us_per_request=30.0, server_cpu_percent=99.0,
                invalid="")
    bad = dict(run.parse_wrk(WRK_READ_ERRORS), cpu_us_per_request=50.0,
               server_cpu_percent=90.0, invalid="read 4232")
    assert run.summarize([good, good, good])["valid"]
    summary = run.summarize([good, bad, good])
    assert not summary["valid"] and summary["invalid"] == "read 4232"


WS_ECHO_CLEAN = ('{"connections": 64, "size": 32, "messages": 151851, "seconds": 3.0, '
                 '"messages_per_s": 50617.0, "errors": 0}\n')
WS_ECHO_ERRORS = ('{"connections": 64, "size": 32, "messages": 1200, "seconds": 3.001, '
                  '"messages_per_s": 399.9, "errors": 64}\n')
WS_ECHO_REFUSED = """\
Traceback (most recent call last):
  File "benchmarks/ws_echo_client.py", line 63, in open_websocket
ConnectionError: handshake refused: b'HTTP/1.1 404 Not Found'
"""


def test_ws_echo_clean_run(run):
    result = run.parse_ws_echo(WS_ECHO_CLEAN)
    assert result["requests"] == 151851
    assert result["rps"] == pytest.approx(50617.0)
    assert result["seconds"] == pytest.approx(3.0)
    assert result["latency_percentiles_s"] == {}
    assert run.run_errors(result) == ""


def test_ws_echo_client_errors_make_the_run_invalid(run):
    result = run.parse_ws_echo(WS_ECHO_ERRORS)
    assert run.run_errors(result) == "client 64"


def test_ws_echo_without_a_report_is_an_error(run):
    with pytest.raises(ValueError):
        run.parse_ws_echo(WS_ECHO_REFUSED)


def test_websocket_scenario_runs_on_its_servers_only(run):
    full, quick = run.MODES["full"], run.MODES["quick"]
    w, a = run.SCENARIOS_BY_KEY["W"], run.SCENARIOS_BY_KEY["A"]
    servers = run.SERVERS_BY_NAME
    assert [s.name for s in run.SERVERS if run.applies(s, w, full)] == [
        "selectserver", "selectserver-pypy", "uvicorn-websockets"]
    assert [s.name for s in run.SERVERS if run.applies(s, w, quick)] == [
        "selectserver", "uvicorn-websockets"]
    assert not run.applies(servers["uvicorn-websockets"], a, full)
    assert "W" in run.QUICK_SCENARIOS and "uvicorn-websockets" in run.QUICK_SERVERS


def test_merging_a_merge_keeps_its_runs(run, tmp_path):
    def results(started, records, load, merged_from=None):
        data = {"mode": "full", "started": started, "servers": ["selectserver"],
                "scenarios": [records[0]["scenario"]], "skipped": {}, "elapsed_s": 10,
                "records": records, "settings": {}, "versions": {"selectserver": started},
                "machine": {"loadavg_at_start": "%s 0 0" % load, "loadavg_at_end": "1 0 0"}}
        if merged_from:
            data["merged_from"] = merged_from
        path = tmp_path / (started + ".json")
        path.write_text(run.json.dumps(data))
        return str(path)

    a = {"scenario": "A", "server": "selectserver", "valid": True, "rps": 1.0}
    w = {"scenario": "W", "server": "selectserver", "valid": True, "rps": 2.0}
    merged = run.merge_results([results("t2", [a], "3.00", merged_from=["t1", "t2"]),
                                results("t3", [w], "0.10")])
    assert merged["merged_from"] == ["t1", "t2", "t3"]
    assert merged["elapsed_s"] == 20
    assert [d["load"][0] for d in merged["run_details"]] == ["3.00", "0.10"]
    assert [r["scenario"] for r in merged["records"]] == ["A", "W"]


def test_results_md_keeps_the_notes_byte_for_byte(run, tmp_path):
    path = tmp_path / "RESULTS.md"
    notes = "\n## Notes and profiles\n\ntext  \n\n\n### later\n\n"
    path.write_text("# x\n\n%s%s%s\n" % (run.NOTES_BEGIN, notes, run.NOTES_END))
    run.write_results_md(str(path), "full", "## Full run\n")
    run.write_results_md(str(path), "quick", "## Quick run\n")
    text = path.read_text()
    assert run.NOTES_BEGIN + notes + run.NOTES_END in text
    assert "## Full run" in text and "## Quick run" in text


def test_results_name_no_path_of_the_machine(run, tmp_path):
    assert "/" not in run.versions()["python"]
    interpreter = str(tmp_path / "versions" / "3.11.7" / "bin" / "python3")
    assert run.portable("3.11.7 (%s)" % interpreter) == "3.11.7 (python3)"
    assert run.portable("0.54.0 with CPython 3.11.7") == "0.54.0 with CPython 3.11.7"


@pytest.mark.parametrize("pipeline, echo_bytes", [(1, 0), (16, 0), (1, 4096)])
def test_hotpath_serves_its_requests(pipeline, echo_bytes):
    # hotpath.py asserts that the answers to each recv() left in one send();
    # a change that breaks that, or the hot path itself, fails here.
    spec = importlib.util.spec_from_file_location(
        "benchmarks_hotpath", os.path.join(os.path.dirname(RUN_PY), "hotpath.py"))
    hotpath = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hotpath)
    assert hotpath.measure(64, pipeline, echo_bytes) > 0


@pytest.mark.parametrize("echo_bytes", [0, 4096])
@pytest.mark.parametrize("part", ["inline", "environ", "cycle", "start_response"])
def test_hotpath_wsgi_serves_its_requests(part, echo_bytes):
    # The WSGI mode with the app on the loop's thread (no pool threads here).
    spec = importlib.util.spec_from_file_location(
        "benchmarks_hotpath", os.path.join(os.path.dirname(RUN_PY), "hotpath.py"))
    hotpath = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hotpath)
    assert hotpath.measure_wsgi(128, echo_bytes, part) > 0
