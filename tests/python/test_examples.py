"""The examples under `genie record` behave exactly like eager CPU runs, and
their recordings are canonical."""
import pytest

from conftest import EXAMPLES, eager

EXAMPLE_NAMES = ["mlp_train", "gpt_decode", "cnn", "recsys", "two_tower"]


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_recorded_example_prints_what_eager_cpu_prints(genie, name):
    program = EXAMPLES / f"{name}.py"
    recorded, trace = genie.record(program)
    assert recorded.returncode == 0, recorded.stderr
    plain = eager(program, "--device", "cpu")
    assert plain.returncode == 0, plain.stderr
    assert recorded.stdout == plain.stdout
    assert recorded.stdout.strip()
    info = genie.info(trace)
    assert info["ops"] > 50
    assert not info["truncated"]
    assert info["segments"] >= 2


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_recording_twice_gives_the_same_dump(genie, name):
    program = EXAMPLES / f"{name}.py"
    first, a = genie.record(program, trace="a.gtrace")
    second, b = genie.record(program, trace="b.gtrace")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    dump_a, dump_b = genie.dump(a), genie.dump(b)
    assert dump_a == dump_b
    assert genie.dump(a, json_form=True) == genie.dump(b, json_form=True)
