"""`genie record` and `genie trace` as a user meets them: pass-through of the
program's output and status, defaults, and one clear error per bad input."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import PYTHON


def one_error_line(r):
    lines = [l for l in r.stderr.splitlines() if l.startswith("genie: error:")]
    assert len(lines) == 1, r.stderr
    return lines[0]


def test_program_output_and_exit_status_pass_through(genie):
    prog = genie.script("""
        import sys, torch
        print("to stdout")
        print("to stderr", file=sys.stderr)
        x = torch.ones(2, device="remote_accelerator")
        print(x.sum().item())
        sys.exit(3)
    """)
    r, trace = genie.record(prog)
    assert r.returncode == 3
    assert r.stdout == "to stdout\n2.0\n"
    assert "to stderr" in r.stderr
    assert "genie record: 1 segments" in r.stderr
    info = genie.info(trace)
    assert info["exit_status"] == 3 and info["truncated"]


def test_a_crashed_program_leaves_a_readable_truncated_trace(genie):
    prog = genie.script("""
        import os, signal, torch
        x = torch.ones(8, device="remote_accelerator")
        print((x * 3).sum().item(), flush=True)
        y = x + 1
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    r, trace = genie.record(prog)
    assert r.returncode == 128 + 9
    assert "trace is truncated" in r.stderr
    info = genie.info(trace)
    assert info["truncated"]
    assert info["segments"] == 1
    assert "killed by signal" in info["reason"]
    assert "disconnected without ending its capture" in info["reason"]
    assert "aten::mul.Tensor" in genie.dump(trace)


def test_default_trace_location_and_newest_trace(genie):
    prog = genie.script("""
        import torch
        print(torch.ones(2, device="remote_accelerator").sum().item())
    """, name="train.py")
    r = genie.run("record", PYTHON, prog)
    assert r.returncode == 0, r.stderr
    traces = list((genie.tmp / "traces").glob("train-*.gtrace"))
    assert len(traces) == 1
    info = genie.run("trace", "info")
    assert info.returncode == 0
    assert f"traces/{traces[0].name}" in info.stdout
    assert "aten::ones" in genie.run("trace", "dump").stdout


@pytest.mark.parametrize("command", [("record", "-o", "t.gtrace"), ("record", "--payload", "none"),
                                     ("run", "--pool", "local"), ("run", "--json", "--pool=local")])
def test_a_double_dash_before_the_program_is_accepted(genie, command):
    prog = genie.script("import sys; print(sys.argv[1:])")
    r = genie.run(*command, "--", PYTHON, prog, "--epochs", "1", "--", "x")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "['--epochs', '1', '--', 'x']\n"


def test_a_program_that_does_not_exist(genie):
    r = genie.run("record", "-o", "t.gtrace", "no-such-program-xyz", "arg")
    assert r.returncode != 0
    assert "cannot start 'no-such-program-xyz': No such file or directory" in one_error_line(r)
    assert not (genie.tmp / "t.gtrace").exists()


def test_an_interpreter_without_torch_is_named(genie):
    candidates = [shutil.which("python3"), "/root/.pyenv/shims/python3", "/usr/local/bin/python3", "/usr/bin/python3"]
    without = None
    for c in candidates:
        if c and os.path.exists(c) and subprocess.run([c, "-c", "import torch"], capture_output=True).returncode:
            without = c
            break
    if without is None:
        pytest.skip("no interpreter without torch on this machine")
    prog = genie.script("import torch\n")
    r, _ = genie.record(prog, python=without)
    assert r.returncode != 0
    line = one_error_line(r)
    assert re.search(r"interpreter /\S*python\S* \(Python 3\.\d+\.\d+\) cannot import torch", line), line


def test_a_file_that_is_not_a_trace(genie):
    (genie.tmp / "notes.gtrace").write_text("hello\n")
    r = genie.run("trace", "info", "notes.gtrace")
    assert r.returncode == 1
    assert "not a Genie trace" in one_error_line(r)


def test_a_missing_trace_and_no_traces_at_all(genie):
    r = genie.run("trace", "dump", "missing.gtrace")
    assert r.returncode == 1
    assert "missing.gtrace" in one_error_line(r)
    r = genie.run("trace", "info")
    assert r.returncode == 1
    assert "none found under ./traces/" in one_error_line(r)


@pytest.fixture
def recorded(genie):
    prog = genie.script("""
        import torch
        w = torch.randn(64, 64).to("remote_accelerator")
        for _ in range(3):
            print(round((w @ w).relu().sum().item(), 3))
    """)
    r, trace = genie.record(prog)
    assert r.returncode == 0, r.stderr
    return trace


def test_a_truncated_trace(genie, recorded):
    data = recorded.read_bytes()
    cut = genie.tmp / "cut.gtrace"
    cut.write_bytes(data[: len(data) * 2 // 3])
    for cmd in ("info", "dump"):
        r = genie.run("trace", cmd, cut)
        assert r.returncode == 1
        assert "truncated" in one_error_line(r)


def test_flipped_bytes(genie, recorded):
    data = bytearray(recorded.read_bytes())
    data[len(data) // 2] ^= 0x40
    bad = genie.tmp / "bad.gtrace"
    bad.write_bytes(bytes(data))
    r = genie.run("trace", "dump", bad)
    assert r.returncode == 1
    assert "checksum mismatch" in one_error_line(r)


def test_a_newer_format_version(genie, recorded):
    data = bytearray(recorded.read_bytes())
    data[8] = 9
    newer = genie.tmp / "newer.gtrace"
    newer.write_bytes(bytes(data))
    r = genie.run("trace", "info", newer)
    assert r.returncode == 1
    assert "format version 9 is newer than this genie reads" in one_error_line(r)


def test_help_explains_the_commands(genie):
    r = genie.run("--help")
    assert r.returncode == 0 and "record" in r.stdout and "trace" in r.stdout
    r = genie.run("record", "--help")
    assert "--payload" in r.stdout and "--output" in r.stdout
