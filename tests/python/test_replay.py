"""`genie serve` and `genie run`: real runtime processes over loopback TCP."""
import json
import socket
import struct
import subprocess
import textwrap
import time

import pytest

from conftest import EXAMPLES, GENIE, Runtime, pool_config

EXAMPLE_ARGS = {
    "mlp_train": ["--steps", "2"],
    "gpt_decode": ["--tokens", "4"],
    "cnn": ["--steps", "2"],
    "recsys": ["--steps", "2"],
    "two_tower": ["--steps", "2"],
}


def run_json(genie, trace, *args):
    r = genie.run("run", *args, trace, "--json")
    return r, (json.loads(r.stdout) if r.stdout.strip() else None)


@pytest.mark.parametrize("name", sorted(EXAMPLE_ARGS))
def test_every_example_replays_and_verifies_on_a_real_runtime(genie, runtime, name):
    rec, trace = genie.record(EXAMPLES / f"{name}.py", *EXAMPLE_ARGS[name])
    assert rec.returncode == 0, rec.stderr
    pool_config(genie.tmp, runtime.address)
    r, out = run_json(genie, trace, "--pool", "test-pool")
    assert r.returncode == 0, r.stderr + r.stdout
    assert out["ok"] and not out["mismatches"]
    assert out["verified"] == genie.info(trace)["materializations"]
    assert out["segments"] == genie.info(trace)["segments"]
    # One round trip per segment, plus hello, the payload query and the upload.
    assert out["round_trips"] == out["segments"] + 3


def test_a_second_run_uploads_no_parameter_bytes(genie, runtime):
    rec, trace = genie.record(EXAMPLES / "mlp_train.py", "--steps", "2")
    assert rec.returncode == 0, rec.stderr
    pool_config(genie.tmp, runtime.address)
    _, first = run_json(genie, trace, "--pool", "test-pool")
    _, second = run_json(genie, trace, "--pool", "test-pool")
    assert first["uploaded_bytes"] > 4 * (32 * 64 + 64 * 64)  # the MLP's weights at least
    assert second["uploaded_bytes"] == 0 and second["uploaded_blobs"] == 0
    assert second["already_present"] == second["payloads"]
    assert second["ok"]
    text = genie.run("run", "--pool", "test-pool", trace)
    assert "uploaded 0 B in 0 payloads" in text.stdout


def test_local_pool_starts_and_stops_its_own_runtime(genie):
    rec, trace = genie.record(EXAMPLES / "gpt_decode.py", "--tokens", "3")
    assert rec.returncode == 0, rec.stderr
    r = genie.run("run", "--pool", "local", trace, "--repeat", "2", "--timeline", "tl.json")
    assert r.returncode == 0, r.stderr
    assert "verification: 8 values match" in r.stdout
    events = json.loads((genie.tmp / "tl.json").read_text())["traceEvents"]
    names = {e["name"] for e in events}
    assert {"upload", "execute"} <= names
    assert sum(e["name"] == "execute" for e in events) == 8
    # The runtime it started (its address is in the first line: a unix
    # socket in the abstract namespace) is gone with the command.
    address = r.stdout.splitlines()[0].split("(")[1].split(",")[0]
    assert address.startswith("unix:@genie-local-"), r.stdout
    with socket.socket(socket.AF_UNIX) as s, pytest.raises(ConnectionRefusedError):
        s.connect("\0" + address[len("unix:@"):])


def test_a_runtime_on_a_unix_socket_file_serves_a_pool(genie, tmp_path):
    rec, trace = genie.record(EXAMPLES / "gpt_decode.py", "--tokens", "3")
    assert rec.returncode == 0, rec.stderr
    path = tmp_path / "rt.sock"
    rt = Runtime(tmp_path, listen=f"unix:{path}")
    try:
        assert rt.address == f"unix:{path}" and path.is_socket()
        pool_config(genie.tmp, rt.address)
        r = genie.run("run", "--pool", "test-pool", trace)
        assert r.returncode == 0, r.stderr
        assert "verification: 4 values match" in r.stdout
    finally:
        rt.stop()
    assert not path.exists()  # the runtime removed its socket file
    # Without a runtime there, the pool's runtime is named as unreachable.
    r = genie.run("run", "--pool", "test-pool", trace)
    assert r.returncode == 1 and f"cannot reach runtime unix:{path}" in r.stderr


def test_a_pool_runtime_whose_transport_is_not_its_address_s_is_refused(genie):
    (genie.tmp / "genie.yaml").write_text("pools:\n  p:\n    runtimes:\n      - {address: 'unix:@x', transport: tcp}\n")
    r = genie.run("run", "--pool", "p", "nothing.gtrace")
    assert r.returncode != 0
    assert "address 'unix:@x' is not a tcp address (HOST:PORT)" in r.stderr


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_a_value_that_differs_from_the_recording_fails_verification(genie):
    prog = genie.script("""
        import torch
        x = torch.tensor([1.5, 2.5, 3.5, 4.5], device="remote_accelerator")
        print((x * 2).tolist())
    """)
    rec, trace = genie.record(prog)
    assert rec.returncode == 0, rec.stderr
    data = bytearray(trace.read_bytes())
    recorded = struct.pack("<4f", 3.0, 5.0, 7.0, 9.0)
    at = data.find(recorded)
    assert at > 0
    data[at + 4: at + 8] = struct.pack("<f", 6.0)  # 5.0 recorded as 6.0
    # Re-seal the chunk: its CRC covers the 16 header bytes and the body.
    start = data.rfind(b"GCHK", 0, at)
    stored = struct.unpack_from("<I", data, start + 12)[0]
    body = bytes(data[start + 20: start + 20 + stored])
    struct.pack_into("<I", data, start + 16, crc32c(bytes(data[start: start + 16]) + body))
    trace.write_bytes(bytes(data))
    r = genie.run("run", "--pool", "local", trace)
    assert r.returncode == 1
    assert "verification FAILED: 1 of 1 values differ" in r.stdout
    assert "max abs error 1" in r.stdout


def test_unknown_pool(genie):
    rec, trace = genie.record(genie.script("import torch\nprint(torch.ones(1, device='remote_accelerator').item())"))
    pool_config(genie.tmp, "127.0.0.1:1")
    r = genie.run("run", "--pool", "gpu-pool-9", trace)
    assert r.returncode == 1
    assert "unknown pool 'gpu-pool-9'" in r.stderr and "test-pool" in r.stderr


def test_unreachable_runtime_is_named(genie):
    rec, trace = genie.record(genie.script("import torch\nprint(torch.ones(1, device='remote_accelerator').item())"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool_config(genie.tmp, f"127.0.0.1:{port}")
    r = genie.run("run", "--pool", "test-pool", trace)
    assert r.returncode == 1
    assert f"cannot reach runtime 127.0.0.1:{port}" in r.stderr


def test_a_refused_token(genie, tmp_path):
    rt = Runtime(tmp_path, token="s3cret")
    try:
        rec, trace = genie.record(genie.script("import torch\nprint(torch.ones(1, device='remote_accelerator').item())"))
        wrong = genie.tmp / "wrong-token"
        wrong.write_text("guess\n")
        pool_config(genie.tmp, rt.address, token_file=wrong)
        r = genie.run("run", "--pool", "test-pool", trace)
        assert r.returncode == 1
        assert "refused the token" in r.stderr
        pool_config(genie.tmp, rt.address, token_file=tmp_path / "token")
        assert genie.run("run", "--pool", "test-pool", trace).returncode == 0
    finally:
        rt.stop()


def test_malformed_frames_drop_the_connection_not_the_runtime(genie, runtime):
    host, port = runtime.address.rsplit(":", 1)
    with socket.create_connection((host, int(port))) as s:
        s.sendall(struct.pack("<I", 0xFFFFFFF0) + b"garbage")  # a length past every limit
        s.settimeout(5)
        assert s.recv(100) == b""  # closed without reading further
    with socket.create_connection((host, int(port))) as s:
        s.sendall(struct.pack("<I", 5) + b"\xff\xff\xff\xff\xff")  # not a protobuf message
        s.settimeout(5)
        assert s.recv(100) == b""
    rec, trace = genie.record(genie.script("import torch\nprint(torch.ones(1, device='remote_accelerator').item())"))
    pool_config(genie.tmp, runtime.address)
    assert genie.run("run", "--pool", "test-pool", trace).returncode == 0


def test_serve_logs_a_line_per_request_and_stops_cleanly_on_sigterm(genie, runtime):
    rec, trace = genie.record(EXAMPLES / "gpt_decode.py", "--tokens", "2")
    pool_config(genie.tmp, runtime.address)
    assert genie.run("run", "--pool", "test-pool", trace).returncode == 0
    code, log = runtime.stop()
    assert code == 0
    assert "hello from genie run" in log
    assert log.count(" execute segment ") == 3
    assert "shutting down" in log


def test_a_blob_larger_than_the_memory_limit_is_refused_with_a_clear_error(genie, tmp_path):
    rt = Runtime(tmp_path, extra=["--max-memory", "100K"])
    try:
        big = genie.script("""
            import torch
            w = torch.ones(256, 256).to("remote_accelerator")
            print(w.sum().item())
        """)
        rec, trace = genie.record(big, trace="big.gtrace")  # a 256 KB weight
        assert rec.returncode == 0, rec.stderr
        pool_config(genie.tmp, rt.address)
        r = genie.run("run", "--pool", "test-pool", trace)
        assert r.returncode == 1
        assert "exceeds the runtime's memory limit" in r.stderr
    finally:
        rt.stop()


def test_memory_limit_evicts_blobs_no_session_uses(genie, tmp_path):
    rt = Runtime(tmp_path, extra=["--max-memory", "600K"])
    try:
        rec, trace = genie.record(EXAMPLES / "gpt_decode.py", "--tokens", "2")  # ~480 KB of weights
        pool_config(genie.tmp, rt.address)
        assert genie.run("run", "--pool", "test-pool", trace).returncode == 0
        rec2, trace2 = genie.record(EXAMPLES / "recsys.py", "--steps", "1", trace="r.gtrace")  # ~160 KB
        r = genie.run("run", "--pool", "test-pool", trace2, "--json")
        assert r.returncode == 0, r.stderr
        # The decoder's weights were evicted to make room: a new run uploads them again.
        _, again = run_json(genie, trace, "--pool", "test-pool")
        assert again["ok"] and again["uploaded_bytes"] > 0
    finally:
        rt.stop()


def read_frame(s):
    def exactly(n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            assert chunk, "connection closed"
            buf += chunk
        return buf
    (length,) = struct.unpack("<I", exactly(4))
    return exactly(length)


# Envelopes encoded by hand (protobuf wire format, genie.proto field numbers):
# hello (10) {protocol_version (1): 5, client (3): "t"}.
HELLO = bytes([0x52, 0x05, 0x08, 0x05, 0x1A, 0x01, ord("t")])


def connect(runtime):
    host, port = runtime.address.rsplit(":", 1)
    s = socket.create_connection((host, int(port)))
    s.settimeout(5)
    return s


def send_frame(s, envelope):
    s.sendall(struct.pack("<I", len(envelope)) + envelope)


def session(runtime):
    """A connection to `runtime` past its Hello."""
    s = connect(runtime)
    send_frame(s, HELLO)
    read_frame(s)
    return s


def test_the_runtime_answers_hello_first_then_heartbeats(runtime):
    # heartbeat (19) {nonce (1): 7}.
    heartbeat = bytes([0x9A, 0x01, 0x02, 0x08, 0x07])
    with connect(runtime) as s:
        send_frame(s, HELLO)
        reply = read_frame(s)
        assert reply[:2] == bytes([0x5A, len(reply) - 2])  # hello_reply (11)
        send_frame(s, heartbeat)
        assert read_frame(s) == bytes([0xA2, 0x01, 0x02, 0x08, 0x07])  # heartbeat_reply (20) {nonce: 7}
    with connect(runtime) as s:
        send_frame(s, heartbeat)  # anything before Hello
        reply = read_frame(s)
        assert reply[:1] == bytes([0x62])  # error (12)
        assert b"the first message must be Hello" in reply
        assert s.recv(10) == b""


def test_a_run_of_a_template_the_session_lacks_is_one_clear_error(runtime):
    # execute (17) {from_template (6): 5}
    execute = bytes([0x8A, 0x01, 0x02, 0x30, 0x05])
    with session(runtime) as s:
        send_frame(s, execute)
        reply = read_frame(s)
        assert reply[:1] == bytes([0x62])  # error (12)
        assert b"template 5 is not defined in this session" in reply
        send_frame(s, execute)  # the connection goes on
        assert b"template 5 is not defined" in read_frame(s)


def test_a_cycle_the_runtime_did_not_offer_is_one_clear_error(runtime):
    run_cycle = bytes([0x12, 0x00])  # run_cycle (2) {}
    with session(runtime) as s:
        send_frame(s, run_cycle)
        reply = read_frame(s)
        assert reply[:1] == bytes([0x62])  # error (12)
        assert b"no cycle was offered to run" in reply
        send_frame(s, bytes([0x9A, 0x01, 0x02, 0x08, 0x07]))  # the connection goes on: heartbeat (19)
        assert read_frame(s) == bytes([0xA2, 0x01, 0x02, 0x08, 0x07])


LONG_PROGRAM = """
    import torch
    x = torch.ones(4, device="remote_accelerator")
    for i in range(50):
        x = x + 1
        print(x.sum().item())
"""


def start_long_run(genie, runtime, tmp_path, *extra):
    _, trace = genie.record(genie.script(LONG_PROGRAM))
    cfg = pool_config(tmp_path, runtime.address)
    proc = subprocess.Popen([GENIE, "run", "--pool", "test-pool", "--config", str(cfg), "--repeat", "1000000",
                             *extra, str(trace)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    assert proc.poll() is None, proc.communicate()
    return proc


def test_a_runtime_that_stops_answering_fails_the_run_within_the_heartbeat_timeout(genie, quiet_runtime, tmp_path):
    runtime = quiet_runtime
    proc = start_long_run(genie, runtime, tmp_path, "--heartbeat-timeout", "2")
    out, err, elapsed = runtime.frozen_while(proc)
    assert proc.returncode == 1
    assert err.count("genie: error:") == 1
    assert "stopped answering heartbeats" in err and runtime.address in err
    assert elapsed < 2 + 3  # the timeout, plus slack for a loaded machine


def test_a_runtime_killed_mid_run_is_one_clear_error(genie, quiet_runtime, tmp_path):
    runtime = quiet_runtime
    proc = start_long_run(genie, runtime, tmp_path)
    start = time.monotonic()
    runtime.proc.kill()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.count("genie: error:") == 1
    assert runtime.address in err
    assert time.monotonic() - start < 5


def backup_config(tmp, primary, backup):
    cfg = tmp / "genie.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        pools:
          main:
            runtimes:
              - {{address: {primary}}}
            backup: spare
          spare:
            runtimes:
              - {{address: {backup}}}
        """))
    return cfg


def test_an_unreachable_pool_falls_over_to_its_backup(genie, runtime, tmp_path):
    _, trace = genie.record(genie.script(LONG_PROGRAM))
    cfg = backup_config(tmp_path, "127.0.0.1:1", runtime.address)
    r, report = run_json(genie, trace, "--pool", "main", "--config", cfg)
    assert r.returncode == 0, r.stderr
    assert report["pool"] == "spare" and report["runtime"] == runtime.address and report["ok"]
    r = genie.run("run", "--pool", "main", "--config", cfg, trace)
    assert "replaying on backup pool 'spare'" in r.stderr and "127.0.0.1:1" in r.stderr


def test_a_runtime_lost_mid_run_moves_the_replay_to_the_backup_pool(genie, quiet_runtime, tmp_path):
    runtime = quiet_runtime
    backup = Runtime(tmp_path, extra=("--log-level", "warn"))
    try:
        _, trace = genie.record(genie.script(LONG_PROGRAM))
        cfg = backup_config(tmp_path, runtime.address, backup.address)
        proc = subprocess.Popen([GENIE, "run", "--pool", "main", "--config", str(cfg), "--repeat", "1000", "--json",
                                 str(trace)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.0)
        assert proc.poll() is None
        runtime.proc.kill()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        report = json.loads(out)
        assert report["pool"] == "spare" and report["ok"] and report["verified"] > 0
        assert "replaying on backup pool 'spare'" in err
    finally:
        backup.stop()
