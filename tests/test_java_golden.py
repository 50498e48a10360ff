"""The golden trainer runs the Java core replays (tools/java_golden.py) still match the Python runtime."""
import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import java_golden  # noqa: E402


def test_committed_trainer_golden_matches_the_runtime():
    committed = json.loads(java_golden.OUT.read_text())
    assert committed == json.loads(json.dumps(java_golden.golden()))


def test_golden_runs_move_and_saturate():
    g = java_golden.golden()
    for case in g["cases"]:
        sam = 2 if case["options"].get("sam_rho") else 0
        assert len(case["after_step"]) == case["steps"] and len(case["calls"]) == (2 * case["m"] + sam) * case["steps"]
        assert case["after_step"][-1]["engine"] != case["initial"]
        assert any(v in (127, -127) for call in case["calls"] for k in call["kernels"] for v in k)
