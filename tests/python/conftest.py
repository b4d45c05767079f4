"""Runs real `genie record` processes on real programs.

GENIE_BINARY, GENIE_SOURCE_DIR and GENIE_PYTHON (an interpreter with torch)
come from ctest; run by hand, they default to the build tree and /usr/bin/python3.
"""
import json
import os
import subprocess
import textwrap
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
