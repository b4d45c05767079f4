"""`genie plan`, `genie plans` and the SQLite plan store, and `genie run`
following the stored plan: real processes on a real store file."""
import json
import sqlite3
import subprocess

import pytest

from conftest import EXAMPLES, GENIE, PYTHON


@pytest.fixture(scope="module")
def gpt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plan")
    trace = folder / "gpt.gtrace"
    r = subprocess.run([GENIE, "record", "-o", trace, PYTHON, EXAMPLES / "gpt_decode.py", "--tokens", "4"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return trace


def genie(*args, cwd=None):
    return subprocess.run([GENIE, *map(str, args)], capture_output=True, text=True, timeout=600, cwd=cwd)


def plan_json(*args):
    r = genie("plan", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_plan_is_stored_and_listed_shown_and_removed(gpt, tmp_path):
    store = tmp_path / "plans.db"
    plan = plan_json(gpt, "--store", store)
    assert plan["class"] == "llm" and plan["pool"] == "local"
    roles = {f["role"]: f for f in plan["fragments"]}
    assert {"prefill", "decode"} <= set(roles)
    kv = [r for r in plan["residency"] if r["kind"] == "kv_cache"]
    assert kv and kv[0]["fragment"] == roles["decode"]["index"] and kv[0]["bytes"] > 0
    assert {"checksums", "compression", "cuda_graphs"} <= set(plan["feature_flags"])
    listed = json.loads(genie("plans", "list", "--json", "--store", store).stdout)
    assert [p["id"] for p in listed] == [plan["id"]]
    shown = genie("plans", "show", plan["id"][:8], "--json", "--store", store)
    assert shown.returncode == 0 and json.loads(shown.stdout) == plan
    assert "decode" in genie("plans", "show", plan["id"], "--store", store).stdout
    assert genie("plans", "rm", plan["id"][:8], "--store", store).returncode == 0
    assert json.loads(genie("plans", "list", "--json", "--store", store).stdout) == []
    r = genie("plans", "show", plan["id"], "--store", store)
    assert r.returncode == 1 and "no plan" in r.stderr


def test_pattern_overrides_the_class(gpt, tmp_path):
    plan = plan_json(gpt, "--store", tmp_path / "p.db", "--pattern", "vision")
    assert plan["class"] == "vision" and plan["class_overridden"]
    r = genie("plan", gpt, "--store", tmp_path / "p.db", "--pattern", "speech")
    assert r.returncode == 1 and "speech" in r.stderr


def test_named_pool_places_work_on_its_devices(gpt, tmp_path):
    (tmp_path / "genie.yaml").write_text(
        "pools:\n  gpus:\n    runtimes:\n      - {address: 10.0.0.5:7070, devices: [cuda:0, cuda:1]}\n")
    plan = plan_json(gpt, "--store", tmp_path / "p.db", "--pool", "gpus", "--config", tmp_path / "genie.yaml")
    assert plan["pool"] == "gpus"
    decode = [f for f in plan["fragments"] if f["role"] == "decode"][0]
    assert decode["address"] == "10.0.0.5:7070" and decode["device"] == "cuda:0"
    assert plan["feature_flags"]["cuda_graphs"] == "decode"


def test_run_plans_first_then_uses_the_stored_plan(gpt, tmp_path):
    store = tmp_path / "plans.db"
    first = genie("run", "--pool", "local", gpt, "--store", store)
    assert first.returncode == 0, first.stderr
    assert "planned" in first.stderr and "from the store" not in first.stderr
    second = genie("run", "--pool", "local", gpt, "--store", store)
    assert second.returncode == 0, second.stderr
    assert "from the store" in second.stderr
    plans = json.loads(genie("plans", "list", "--json", "--store", store).stdout)
    assert len(plans) == 1 and plans[0]["uses"] == 2
    r = genie("run", "--pool", "local", gpt, "--store", store, "--json")
    report = json.loads(r.stdout)
    assert report["plan"]["id"] == plans[0]["id"] and report["plan"]["from_store"]


def test_run_refuses_a_plan_for_another_pool_or_trace(gpt, tmp_path):
    store = tmp_path / "plans.db"
    (tmp_path / "genie.yaml").write_text("pools:\n  far:\n    runtimes:\n      - {address: 127.0.0.1:1}\n")
    plan = plan_json(gpt, "--store", store, "--pool", "far", "--config", tmp_path / "genie.yaml")
    r = genie("run", "--pool", "local", "--plan", plan["id"], gpt, "--store", store)
    assert r.returncode == 1 and r.stderr.count("genie: error:") == 1
    assert "is for pool 'far', not 'local'" in r.stderr
    other = tmp_path / "other.gtrace"
    rec = genie("record", "-o", other, PYTHON, EXAMPLES / "mlp_train.py", "--steps", "1")
    assert rec.returncode == 0
    local = plan_json(gpt, "--store", store)
    r = genie("run", "--pool", "local", "--plan", local["id"], other, "--store", store)
    assert r.returncode == 1 and "made for another trace" in r.stderr


def test_bad_stores_are_clear_errors_and_are_left_alone(gpt, tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"definitely not sqlite " * 20)
    r = genie("plan", gpt, "--store", junk)
    assert r.returncode == 1 and r.stderr.count("genie: error:") == 1
    assert "not a plan store" in r.stderr and str(junk) in r.stderr
    assert junk.read_bytes() == b"definitely not sqlite " * 20
    newer = tmp_path / "newer.db"
    plan_json(gpt, "--store", newer)
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 7")
    r = genie("plans", "list", "--store", newer)
    assert r.returncode == 1 and "schema version 7 is newer" in r.stderr


def test_concurrent_plan_processes_lose_nothing(tmp_path):
    # Eight different traces planned into one fresh store at once.
    traces = []
    for i in range(8):
        trace = tmp_path / f"t{i}.gtrace"
        prog = tmp_path / f"p{i}.py"
        prog.write_text("import torch\n"
                        f"x = torch.ones({i + 2}, device='remote_accelerator')\n"
                        "print((x * 2).sum().item())\n")
        assert genie("record", "-o", trace, PYTHON, prog).returncode == 0
        traces.append(trace)
    store = tmp_path / "shared.db"
    procs = [subprocess.Popen([GENIE, "plan", str(t), "--store", str(store), "--json"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for t in traces for _ in range(2)]
    results = [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]
    for code, out, err in results:
        assert code == 0, err
        assert "locked" not in err
    listed = json.loads(genie("plans", "list", "--json", "--store", store).stdout)
    assert sorted(p["trace"] for p in listed) == sorted(str(t) for t in traces)
    with sqlite3.connect(store) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
