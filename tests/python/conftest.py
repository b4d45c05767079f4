"""Runs real `genie record` processes on real programs.

GENIE_BINARY, GENIE_SOURCE_DIR and GENIE_PYTHON (an interpreter with torch)
come from ctest; run by hand, they default to the build tree and /usr/bin/python3.
"""
import json
import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

SOURCE = Path(os.environ.get("GENIE_SOURCE_DIR", Path(__file__).resolve().parents[2]))
GENIE = os.environ.get("GENIE_BINARY", str(SOURCE / "build" / "cli" / "genie"))
PYTHON = os.environ.get("GENIE_PYTHON", "/usr/bin/python3")
EXAMPLES = SOURCE / "examples"


class Genie:
    def __init__(self, tmp_path):
        self.tmp = tmp_path

    def run(self, *args, check=False, cwd=None):
        return subprocess.run([GENIE, *map(str, args)], capture_output=True, text=True, check=check,
                              cwd=cwd or self.tmp, timeout=600)

    def script(self, body, name="prog.py"):
        path = self.tmp / name
        path.write_text(textwrap.dedent(body))
        return path

    def record(self, program, *args, trace="t.gtrace", payload=None, python=PYTHON):
        """Records `python program args`; returns (process, trace path)."""
        out = self.tmp / trace
        cmd = ["record", "-o", out]
        if payload:
            cmd += ["--payload", payload]
        return self.run(*cmd, python, program, *args), out

    def dump(self, trace, json_form=False):
        r = self.run("trace", "dump", *(["--json"] if json_form else []), trace, check=True)
        return json.loads(r.stdout) if json_form else r.stdout

    def info(self, trace):
        return json.loads(self.run("trace", "info", "--json", trace, check=True).stdout)


@pytest.fixture(scope="session", autouse=True)
def private_plan_store(tmp_path_factory):
    """`genie run` and `genie plan` keep plans in a store; the tests' goes to a temporary folder, not ~/.local."""
    os.environ["GENIE_STORE"] = str(tmp_path_factory.mktemp("store") / "plans.db")
    yield
    del os.environ["GENIE_STORE"]


@pytest.fixture
def genie(tmp_path):
    return Genie(tmp_path)


def eager(program, *args):
    """Runs a program plainly, without genie."""
    return subprocess.run([PYTHON, str(program), *map(str, args)], capture_output=True, text=True, timeout=600)


class Runtime:
    def __init__(self, tmp, token=None, extra=(), listen="127.0.0.1:0", device="cpu"):
        cmd = [GENIE, "serve", "--listen", listen, "--device", device, *extra]
        if token:
            path = tmp / "token"
            path.write_text(token + "\n")
            cmd += ["--token-file", str(path)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert line.startswith("listening on "), self.proc.stderr.read()
        self.address = line.split()[-1]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, err

    def frozen_while(self, proc, timeout=60):
        """Stops this runtime (SIGSTOP: it neither answers nor closes its
        sockets) until `proc` exits; returns proc's (stdout, stderr, seconds it took)."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        start = time.monotonic()
        try:
            out, err = proc.communicate(timeout=timeout)
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)
        return out, err, time.monotonic() - start


@pytest.fixture
def runtime(tmp_path):
    rt = Runtime(tmp_path)
    yield rt
    if rt.proc.poll() is None:
        rt.stop()


def pool_config(tmp, address, token_file=None):
    cfg = tmp / "genie.yaml"
    transport = "unix" if address.startswith("unix:") else "tcp"
    entry = f"{{address: '{address}', transport: {transport}" + (f", token_file: {token_file}" if token_file else "") + "}"
    cfg.write_text(textwrap.dedent(f"""\
        pools:
          test-pool:
            runtimes:
              - {entry}
        """))
    return cfg


@pytest.fixture
def quiet_runtime(tmp_path):
    """A runtime that logs warnings only: a long run's request lines would fill the stderr pipe nobody reads."""
    rt = Runtime(tmp_path, extra=("--log-level", "warn"))
    yield rt
    if rt.proc.poll() is None:
        rt.stop()
