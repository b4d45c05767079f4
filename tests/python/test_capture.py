"""What the capture frontend records: ops, arguments, aliases, module paths,
phases and materialization points, on small programs."""
import re

from conftest import EXAMPLES, PYTHON, eager


def ops_of(dump):
    return [line for line in dump.splitlines() if re.match(r"\s+(%\d+(, %\d+)* = )?aten::", line)]


def replays_and_runs_live_like_eager(genie, prog, trace, want):
    """The recorded `trace` of `prog` replays with its recorded values, and
    `prog` run live prints what eager printed (`want`)."""
    replay = genie.run("run", "--pool", "local", trace)
    assert replay.returncode == 0, replay.stderr
    assert "values match" in replay.stdout + replay.stderr
    live = genie.run("run", "--pool", "local", PYTHON, prog, "remote_accelerator")
    assert live.returncode == 0, live.stderr
    assert live.stdout == want.stdout


def test_module_paths_and_training_phases(genie):
    prog = genie.script("""
        import torch, torch.nn as nn
        torch.manual_seed(0)
        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.body = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
                self.head = nn.Linear(8, 2)
            def forward(self, x):
                return self.head(self.body(x))
        net = Net().to("remote_accelerator")
        opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
        x = torch.randn(3, 4, device="remote_accelerator")
        loss = net(x).pow(2).mean()
        loss.backward()
        opt.step()
        print(round(loss.item(), 4))
    """)
    r, trace = genie.record(prog)
    assert r.returncode == 0, r.stderr
    steps = [s for seg in genie.dump(trace, json_form=True)["segments"] for s in seg["steps"] if "op" in s]
    by_phase = {}
    for s in steps:
        by_phase.setdefault(s["phase"], []).append(s)
    addmm = [s for s in by_phase["forward"] if s["op"] == "aten::addmm"]
    assert [s["module"] for s in addmm] == ["Net.body.0", "Net.head"]
    assert any(s["op"] == "aten::relu" and s["module"] == "Net.body.1" for s in by_phase["forward"])
    assert any(s["op"] == "aten::pow.Tensor_Scalar" and s["module"] == "" for s in by_phase["forward"])
    assert any(s["op"] == "aten::threshold_backward" for s in by_phase["backward"])
    # SGD with momentum: a momentum buffer, then in-place parameter updates.
    optimizer_ops = {s["op"] for s in by_phase["optimizer"]}
    assert "aten::add_.Tensor" in optimizer_ops
    assert any(s["op"].startswith("aten::randn") and s["random"] for s in steps)


def test_views_and_in_place_ops_record_their_storage(genie):
    prog = genie.script("""
        import torch
        x = torch.zeros(4, 4, device="remote_accelerator")
        row = x[1]
        row.add_(3)
        x.mul_(2)
        print(x.sum().item(), row.tolist())
    """)
    r, trace = genie.record(prog)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "24.0 [6.0, 6.0, 6.0, 6.0]"
    dump = genie.dump(trace)
    select = next(line for line in ops_of(dump) if "aten::select.int" in line)
    zeros_id = re.search(r"(%\d+) = aten::zeros", dump).group(1)
    assert f"alias {zeros_id}" in select
    add = next(line for line in ops_of(dump) if "aten::add_.Tensor" in line)
    assert f"alias {zeros_id}" in add
    mul = next(line for line in ops_of(dump) if "aten::mul_.Tensor" in line)
    assert f"alias {zeros_id}" in mul


def test_every_materialization_point_closes_a_segment(genie):
    prog = genie.script("""
        import torch
        x = torch.arange(6, device="remote_accelerator", dtype=torch.float32).reshape(2, 3)
        a = (x * 2).cpu()
        b = x.sum().item()
        c = x.tolist()
        d = x.numpy().shape
        print(x)
        if (x > 4).any():
            e = "yes"
        f = f"{x.mean():.2f}"
        print(a.tolist(), b, c, d, e, f)
    """)
    r, trace = genie.record(prog)
    assert r.returncode == 0, r.stderr
    assert "tensor([[0., 1., 2.],\n        [3., 4., 5.]], device='remote_accelerator')" in r.stdout
    assert "[[0.0, 2.0, 4.0], [6.0, 8.0, 10.0]] 15.0 [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]] (2, 3) yes 2.50" in r.stdout
    hows = [m["how"] for seg in genie.dump(trace, json_form=True)["segments"] for m in seg["materialized"]]
    assert hows == ["cpu", "item", "tolist", "numpy", "print", "item", "item"]


def test_prefill_and_decode_are_told_apart_by_the_kv_cache_argument(genie):
    r, trace = genie.record(EXAMPLES / "gpt_decode.py", "--tokens", "3")
    assert r.returncode == 0, r.stderr
    segs = genie.dump(trace, json_form=True)["segments"]
    phases = [{s["phase"] for s in seg["steps"] if "op" in s} for seg in segs]
    assert "prefill" in phases[0] and "decode" not in phases[0]
    assert all("decode" in p and "prefill" not in p for p in phases[1:])
    # KV cache growth: the decode steps concatenate onto cached keys.
    assert any(s["op"] == "aten::cat" and s["module"] == "GPT.blocks.0.attn"
               for s in segs[1]["steps"] if "op" in s)


def test_an_op_that_cannot_be_captured_is_a_clear_error_naming_it(genie):
    prog = genie.script("""
        import torch
        x = torch.ones(3, device="remote_accelerator")
        torch.randn(3, device="remote_accelerator", generator=torch.Generator())
    """)
    r, trace = genie.record(prog)
    assert r.returncode == 1
    assert "cannot capture an argument of type Generator (in aten::randn.generator)" in r.stderr
    info = genie.info(trace)
    assert info["truncated"]


def test_payload_modes(genie):
    prog = genie.script("""
        import torch
        w = torch.ones(256, 256).to("remote_accelerator")
        print((w * 2).sum().item())
    """)
    sizes = {}
    for mode in ("full", "inputs", "none"):
        r, trace = genie.record(prog, payload=mode, trace=f"{mode}.gtrace")
        assert r.returncode == 0, r.stderr
        sizes[mode] = genie.info(trace)["payload_bytes"]
    assert sizes["full"] == 256 * 256 * 4 + 4  # the weight, and the recorded 0-dim result
    assert sizes["inputs"] == 256 * 256 * 4
    assert sizes["none"] == 0


def test_identical_payloads_are_stored_once(genie):
    prog = genie.script("""
        import torch
        a = torch.ones(1000).to("remote_accelerator")
        b = torch.ones(1000).to("remote_accelerator")
        print((a + b).sum().item())
    """)
    r, trace = genie.record(prog, payload="inputs")
    assert r.returncode == 0, r.stderr
    info = genie.info(trace)
    assert info["inputs"] == 2
    assert info["payloads"] == 1
    assert info["payload_bytes"] == 4000


FOREACH_PROGRAM = """
    import sys, torch, torch.nn as nn
    torch.manual_seed(0)
    device = sys.argv[1]
    foreach = {"default": None, "single": False}[sys.argv[2]]
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).to(device)
    opts = [torch.optim.Adam(net.parameters(), lr=0.01, foreach=foreach),
            torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, foreach=foreach),
            torch.optim.AdamW(net.parameters(), lr=0.01, foreach=foreach)]
    x = torch.randn(16, 4).to(device)
    for opt in opts:
        for _ in range(3):
            opt.zero_grad()
            net(x).pow(2).mean().backward()
            opt.step()
        print(opt.defaults["foreach"], [round(p.sum().item(), 6) for p in net.parameters()])
"""


def test_optimizers_of_remote_parameters_take_the_foreach_kernels_recorded_per_tensor(genie):
    prog = genie.script(FOREACH_PROGRAM)
    want = eager(prog, "cpu", "default")
    assert want.returncode == 0, want.stderr
    r, trace = genie.record(prog, "remote_accelerator", "default")
    assert r.returncode == 0, r.stderr
    # foreach=None became True for Adam, SGD and AdamW; the updates are the
    # eager ones, to the bit.
    assert r.stdout.replace("True", "None") == want.stdout
    assert [line.split()[0] for line in r.stdout.splitlines()] == ["True", "True", "True"]
    steps = [s for seg in genie.dump(trace, json_form=True)["segments"] for s in seg["steps"] if "op" in s]
    assert not [s for s in steps if "_foreach" in s["op"]]
    optimizer = [s for s in steps if s["phase"] == "optimizer"]
    # Adam and AdamW: one addcdiv_ per parameter (4) and step (3); each a new version of its parameter.
    addcdiv = [s for s in optimizer if s["op"] == "aten::addcdiv_"]
    assert len(addcdiv) == 2 * 4 * 3  # Adam and AdamW
    assert all(s["outputs"][0].get("alias") for s in addcdiv)
    assert len({s["outputs"][0]["value"] for s in addcdiv}) == len(addcdiv)
    # The program's explicit foreach=False stays: per-tensor ops from the optimizer's own loop.
    r2, trace2 = genie.record(prog, "remote_accelerator", "single", trace="single.gtrace")
    assert r2.returncode == 0, r2.stderr
    assert r2.stdout == eager(prog, "cpu", "single").stdout
    assert r2.stdout.splitlines()[0].startswith("False ")
    # Replayed on a runtime, the foreach run's trace gives the recorded values.
    replay = genie.run("run", "--pool", "local", trace)
    assert replay.returncode == 0, replay.stderr
    assert "values match" in replay.stdout + replay.stderr


def test_foreach_ops_in_live_mode(genie):
    prog = genie.script(FOREACH_PROGRAM)
    want = eager(prog, "cpu", "default")
    r = genie.run("run", "--pool", "local", PYTHON, prog, "remote_accelerator", "default")
    assert r.returncode == 0, r.stderr
    assert r.stdout.replace("True", "None") == want.stdout


def test_foreach_ops_on_lists_that_share_tensors_and_mixed_numbers(genie):
    # Element i of an in-place foreach op reads what elements before it wrote:
    # b += a after a += b sees the new a, and a tensor twice in the target
    # list is updated twice. Numbers of several types in one list.
    prog = genie.script("""
        import sys, torch
        device = sys.argv[1]
        torch.manual_seed(0)
        a, b, c = (torch.randn(3).to(device) for _ in range(3))
        torch._foreach_add_([a, b], [b, a])
        torch._foreach_mul_([c, c, a], [2, 0.5, True])
        d = torch._foreach_add([a, b, c], [1, 2.5, 3])
        torch._foreach_addcmul_([b, c], [a, a], [c, b], 0.25)
        print([[round(v, 5) for v in t.tolist()] for t in (a, b, c, *d)])
    """)
    want = eager(prog, "cpu")
    assert want.returncode == 0, want.stderr
    r, trace = genie.record(prog, "remote_accelerator")
    assert r.returncode == 0, r.stderr
    assert r.stdout == want.stdout
    replays_and_runs_live_like_eager(genie, prog, trace, want)


def test_repeated_foreach_calls_record_what_their_first_call_recorded(genie):
    # A foreach call of a form seen before (the same op, tensor metadata and
    # number types) copies that call's records with its own ids and numbers.
    # Each round: numbers that change, results fed on, an int list, a keyword
    # float, a call with a target at another position (read element by
    # element), and tensors whose shapes change halfway.
    prog = genie.script("""
        import sys, torch
        device = sys.argv[1]
        torch.manual_seed(0)
        for shapes in ([(3, 2), (4,), (3, 2)], [(5,), (1, 3), (5,)]):
            p = [torch.randn(s).to(device) for s in shapes]
            g = [torch.randn(s).to(device) for s in shapes]
            m = [torch.zeros(s).to(device) for s in shapes]
            for k in range(1, 5):
                torch._foreach_mul_(m, 0.5 + k)
                torch._foreach_add_(m, g, alpha=0.25 * k)
                r = torch._foreach_sqrt(torch._foreach_add(m, [0.1 * k, 0.2, 0.3]))
                torch._foreach_div_(r, [1.0 + k, 2.0, 3.5])
                torch._foreach_addcdiv_(p, m, r, [-0.1 * k, 0.2, -0.3])
                torch._foreach_add_(g, [k, 2, 3])
                ends = [m[0], m[2]]
                torch._foreach_add_(ends, [m[2], m[0]] if k % 2 else [g[0], g[2]])
                print([round(v, 5) for v in torch.cat([t.flatten() for t in [*p, *m, *r]]).tolist()])
    """)
    want = eager(prog, "cpu")
    assert want.returncode == 0, want.stderr
    r, trace = genie.record(prog, "remote_accelerator")
    assert r.returncode == 0, r.stderr
    assert r.stdout == want.stdout
    rounds = []
    ends = []  # per round, the two records of the call on `ends`
    for seg in genie.dump(trace, json_form=True)["segments"]:
        ops = [(s["op"], len(s["args"])) for s in seg["steps"] if "op" in s]
        if ops:
            rounds.append(ops)
            ends.append([s for s in seg["steps"] if s.get("op") == "aten::add_.Tensor" and not s["kwargs"]])
    # Every round of a set of shapes records the same per-tensor ops.
    assert len(rounds) == 8
    for ops in rounds[1:4]:
        assert ops == rounds[0]
    for ops in rounds[5:]:
        assert ops == rounds[4]
    # In odd rounds (k = 1, 3) the second element adds the value the first
    # one made, as it does in eager PyTorch; in even rounds it reads g.
    for k, (first, second) in enumerate(ends):
        made = first["outputs"][0]["value"]
        assert (second["args"][1]["tensor"] == made) == (k % 2 == 0)
    replays_and_runs_live_like_eager(genie, prog, trace, want)


def test_custom_autograd_functions_and_nested_grad_calls_inside_backward(genie):
    prog = genie.script("""
        import sys, torch
        device = sys.argv[1]
        torch.manual_seed(0)
        class Cube(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                ctx.save_for_backward(x)
                return x * x * x
            @staticmethod
            def backward(ctx, g):
                x, = ctx.saved_tensors
                # A factory on the program's device and a nested autograd.grad inside backward().
                three = torch.full((), 3.0, device=device)
                with torch.enable_grad():
                    y = x.detach().requires_grad_(True)
                    dy, = torch.autograd.grad((y * y).sum(), y)
                return g * three * (dy / 2) * x
        w = torch.randn(5).to(device).requires_grad_(True)
        for step in range(3):
            loss = Cube.apply(w).sum()
            loss.backward()
            with torch.no_grad():
                w -= 0.01 * w.grad
            w.grad = None
            print(round(loss.item(), 5), [round(v, 5) for v in w.tolist()])
    """)
    want = eager(prog, "cpu")
    assert want.returncode == 0, want.stderr
    r, trace = genie.record(prog, "remote_accelerator")
    assert r.returncode == 0, r.stderr
    assert r.stdout == want.stdout
    # The function's gradient checks (is_same_size) are answered from metadata:
    # one segment per materialization, not one per autograd node.
    info = genie.info(trace)
    assert info["segments"] == 6, info
