"""The absl tools, run through their flags as a user would."""
import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _tool(name, *args):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / name), *args], capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    return out.returncode, out.stdout + out.stderr


def test_train_writes_result_then_resumes(head_model_path, cache_dir, tmp_path):
    common = [f"--model={head_model_path}", f"--cache_dir={cache_dir}", "--n_test=200", "--eval_every=10",
              "--checkpoint_every=10", f"--out={tmp_path}"]
    rc, log = _tool("train.py", *common, "--steps=20")
    assert rc == 0, log
    first = json.loads((tmp_path / "result.json").read_text())
    for key in ("task", "model", "method", "trainable_params", "zero_shot_acc", "final_acc", "steps",
                "forward_passes", "wall_s", "peak_rss_mb", "seed", "weights_sha256"):
        assert key in first, key
    assert first["steps"] == 20 and first["forward_passes"] == 120 and first["trainable_params"] == 640
    assert (tmp_path / "trained.tflite").exists() and (tmp_path / "checkpoint.npz").exists()
    rc, log = _tool("train.py", *common, "--steps=30", "--resume")
    assert rc == 0 and "resumed from" in log and "at step 20" in log, log
    assert json.loads((tmp_path / "result.json").read_text())["steps"] == 30
    rc, log = _tool("evaluate.py", f"--model={tmp_path / 'trained.tflite'}", f"--cache_dir={cache_dir}", "--n_test=200")
    assert rc == 0 and "infer" in log, log


def test_resume_with_other_hyperparameters_is_refused(head_model_path, cache_dir, tmp_path):
    common = [f"--model={head_model_path}", f"--cache_dir={cache_dir}", "--n_test=100", f"--out={tmp_path}"]
    assert _tool("train.py", *common, "--steps=4")[0] == 0
    rc, log = _tool("train.py", *common, "--steps=8", "--resume", "--eps_lsb=3")
    assert rc != 0 and "CheckpointError" in log and "config" in log, log


def test_convert_rejects_unknown_trainable_layer(cache_dir, tmp_path):
    rc, log = _tool("convert.py", f"--cache_dir={cache_dir}", "--trainable=conv2d_99", f"--out={tmp_path / 'm.tflite'}")
    assert rc != 0 and "conv2d_99" in log and "weight layers of this model are" in log
    assert not list(tmp_path.iterdir())
