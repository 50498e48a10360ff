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
        options = case["options"]
        sam = 2 if options.get("sam_rho") else 0
        probes = 0 if options.get("head_only") else (2 * case["m"] + sam) * case["steps"]
        assert len(case["after_step"]) == case["steps"] and len(case["calls"]) == probes
        assert len(case.get("head_calls", [])) == (case["steps"] if options.get("exact_head") else 0)
        assert case["after_step"][-1]["engine"] != case["initial"]
        kernels = [k for call in case["calls"] + case.get("head_calls", []) for k in call["kernels"]]
        assert any(v in (127, -127) for k in kernels for v in k)


def test_exact_head_cases_never_perturb_the_head_and_move_it():
    """Sign-m-SPSA's probes leave the head at the step's weights (the sampler's support excludes it);
    the head moves by its exact gradient only, and only where its mask or selection lets it."""
    cases = [c for c in java_golden.golden()["cases"] if c["options"].get("exact_head")]
    assert len(cases) == 9 and any(c["options"].get("head_only") for c in cases)
    assert sum(c["options"].get("head_optimizer") == "adam" for c in cases) == 4
    for case in cases:
        steps = case["steps"]
        per_step = len(case["calls"]) // steps
        for s in range(steps):
            head = case["head_calls"][s]["kernels"][-1]
            assert all(call["kernels"][-1] == head for call in case["calls"][s * per_step:(s + 1) * per_step])
        start, end = case["initial"][-1], case["after_step"][-1]["engine"][-1]
        assert start != end
        if case["support"] is not None:
            assert all(a == b for a, b, on in zip(start, end, case["support"][-1]) if not on)


def test_block_coordinate_probes_perturb_one_tensor_cycling():
    """Probe i of step s moves only tensor active[(s + i) % n] (SAM's ascent and its anchor aside)."""
    cases = [c for c in java_golden.golden()["cases"] if c["options"].get("block_coordinate")]
    assert len(cases) == 6
    for case in cases:
        if case["options"].get("sam_rho"):
            continue
        n = len(case["initial"]) - bool(case["options"].get("exact_head"))
        per_step = 2 * case["m"]
        for s in range(case["steps"]):
            start = case["after_step"][s - 1]["engine"] if s else case["initial"]
            for i in range(case["m"]):
                for call in case["calls"][s * per_step + 2 * i:s * per_step + 2 * i + 2]:
                    moved = {t for t, (k, w) in enumerate(zip(call["kernels"], start)) if k != w}
                    assert moved <= {(s + i) % n}
