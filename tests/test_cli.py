"""tools/_cli.py through the real tools: a user's mistake is one line and exit 1, never a traceback;
SIGINT/SIGTERM during training keep the last complete checkpoint and say how to resume."""
import json
import os
import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest

from tflite_fg import checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _tool(name, *args, timeout=600):
    out = subprocess.run([sys.executable, str(ROOT / "tools" / name), *map(str, args)], capture_output=True,
                         text=True, cwd=ROOT, timeout=timeout)
    return out.returncode, out.stdout, out.stderr


def assert_one_line_error(rc, stdout, stderr, *needles):
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert rc == 1 and "Traceback" not in stderr + stdout and len(errors) == 1, stderr[-3000:]
    assert stderr.rstrip().endswith(errors[0]), stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture(scope="module")
def data_files(fewshot_task, tmp_path_factory):
    """The default task's real images and labels, saved right and in every wrong way."""
    d = tmp_path_factory.mktemp("data")
    t = fewshot_task
    good = {"x_train": t.x_support, "y_train": t.y_support, "x_test": t.x_test[:100], "y_test": t.y_test[:100]}
    np.savez(d / "good.npz", **good)
    np.savez(d / "no_test.npz", x_train=t.x_support, y_train=t.y_support)
    (d / "text.npz").write_text("this is not numpy\n" * 40)
    (d / "truncated.npz").write_bytes((d / "good.npz").read_bytes()[:200_000])
    nan = good["x_test"].copy()
    nan[7, 3, 4, 1] = np.nan
    np.savez(d / "nan.npz", **{**good, "x_test": nan})
    np.savez(d / "empty_test.npz", **{**good, "x_test": good["x_test"][:0], "y_test": good["y_test"][:0]})
    np.savez(d / "raw_pixels.npz", **{**good, "x_train": good["x_train"] * 128 + 128})
    np.savez(d / "scaled.npz", **{**good, "x_test": good["x_test"] * 1e6})
    np.savez(d / "labels.npz", **{**good, "y_train": good["y_train"] + 5})
    some = good["x_train"].copy()
    some.reshape(-1)[::100] = 5.0  # 1% of the values clipped: a warning, not a refusal
    np.savez(d / "some_clipped.npz", **{**good, "x_train": some})
    return d


TRAIN_MISTAKES = [
    (["--checkpoint_every=0"], ["--checkpoint_every=0"]),
    (["--log_every=0"], ["--log_every=0"]),
    (["--eval_every=-5"], ["--eval_every=-5"]),
    (["--checkpoint_every=-1"], ["--checkpoint_every=-1"]),
    (["--num_threads=0"], ["--num_threads=0"]),
    (["--body_lr_scale=-1"], ["--body_lr_scale", "> 0"]),
    (["--lr=nan"], ["--lr"]),
    (["--steps=0"], ["--steps=0"]),
    (["--budget=1.5"], ["--budget"]),
    (["--data=DATA/no_test.npz"], ["no_test.npz has no array 'x_test', 'y_test'", "numpy.savez"]),
    (["--data=DATA/text.npz"], ["text.npz is not an .npz"]),
    (["--data=DATA/truncated.npz"], ["truncated.npz is truncated or corrupt"]),
    (["--data=DATA/missing.npz"], ["missing.npz: no such data file"]),
    (["--data=DATA/nan.npz"], ["nan.npz:x_test has 1 NaN and 0 inf values (first at index (7, 3, 4, 1))"]),
    (["--data=DATA/empty_test.npz"], ["empty_test.npz:x_test is empty"]),
    (["--data=DATA/raw_pixels.npz"], ["raw_pixels.npz:x_train", "input range", "preprocess"]),
    (["--data=DATA/scaled.npz"], ["scaled.npz:x_test", "input range"]),
    (["--data=DATA/labels.npz"], ["labels.npz:y_train: labels out of range [0, 10): min 5, max 14"]),
    (["--data=DATA/good.npz", "--shots=5"], ["--shots choose the default task's data and model"]),
    (["--data=DATA/good.npz", "--n_test=5"], ["--n_test sets the default task's test images"]),
    (["--budget=0.5"], ["--budget only apply with --select"]),
    (["--checkpoint_every=5"], ["--checkpoint_every only apply with --out"]),
    (["--trainable=head"], ["--trainable"]),
    (["--resume"], ["--resume only apply with --out"]),
    (["--select=random", "--grad_average=0.9"], ["--grad_average", "re-selection", "--select=static"]),
    (["--select=velocity", "--head_optimizer=adam"], ["--head_optimizer=adam keeps its moments", "re-selection"]),
    (["--lr=2", "--m=4"], ["--lr, --m have no effect", "exact gradient", "--noexact_head"]),
    (["--precision=fp32", "--head_lr=0.1"], ["--head_lr only apply with the exact head"]),
    (["--noexact_head", "--head_optimizer=sgd"], ["--head_optimizer only apply with the exact head"]),
    (["--head_optimizer=lbfgs"], ["head_optimizer", "adam", "sgd"]),
    (["--head_lr=inf"], ["--head_lr must be a finite number > 0"]),
]


@pytest.mark.parametrize("args, needles", TRAIN_MISTAKES, ids=[" ".join(a) for a, _ in TRAIN_MISTAKES])
def test_train_mistakes_are_one_line(head_model_path, cache_dir, data_files, args, needles):
    args = [a.replace("DATA", str(data_files)) for a in args]
    default_task = [] if any(a.startswith("--data=") for a in args) else ["--n_test=100"]
    rc, out, err = _tool("train.py", f"--model={head_model_path}", f"--cache_dir={cache_dir}", "--steps=3",
                         *default_task, *args)
    assert_one_line_error(rc, out, err, *needles)


def test_model_file_mistakes_are_one_line(head_model_path, cache_dir, tmp_path):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(head_model_path.read_bytes()[:5000])
    (tmp_path / "truncated.tflite.json").write_bytes(pathlib.Path(f"{head_model_path}.json").read_bytes())
    bare = tmp_path / "bare.tflite"
    bare.write_bytes(head_model_path.read_bytes())
    for model, needle in [(truncated, "corrupt or truncated"), (bare, "bare.tflite.json not found"),
                          (tmp_path / "none.tflite", "no such model file")]:
        rc, out, err = _tool("train.py", f"--model={model}", f"--cache_dir={cache_dir}", "--steps=1", "--n_test=50")
        assert_one_line_error(rc, out, err, str(model), needle)
    rc, out, err = _tool("evaluate.py", f"--model={truncated}", f"--cache_dir={cache_dir}", "--n_test=50")
    assert_one_line_error(rc, out, err, "corrupt or truncated")


def test_debug_shows_the_traceback(head_model_path, cache_dir):
    rc, out, err = _tool("train.py", f"--model={head_model_path}", f"--cache_dir={cache_dir}", "--data=/no/such.npz",
                         "--debug")
    assert rc != 0 and "Traceback" in err and "DataError" in err


def test_clipping_warns_large_batches_are_noted_and_training_runs(head_model_path, cache_dir, data_files):
    rc, out, err = _tool("train.py", f"--model={head_model_path}", f"--data={data_files / 'some_clipped.npz'}",
                         "--steps=2", "--batch_size=500", "--eval_every=0")
    assert rc == 0, err
    assert "warning: 1.0% of the values of" in out and "some_clipped.npz:x_train" in out
    assert "note: --batch_size=500 exceeds the 200 training examples" in out


def test_evaluate_checks_its_data(head_model_path, data_files):
    rc, out, err = _tool("evaluate.py", f"--model={head_model_path}", f"--data={data_files / 'nan.npz'}")
    assert_one_line_error(rc, out, err, "nan.npz:x_test has 1 NaN")
    rc, out, err = _tool("evaluate.py", f"--model={head_model_path}", f"--data={data_files / 'good.npz'}",
                         "--n_test=5")
    assert_one_line_error(rc, out, err, "no effect with --data")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_finishes_the_step_checkpoints_and_resume_is_bit_exact(head_model_path, cache_dir, tmp_path, sig):
    common = [f"--model={head_model_path}", f"--cache_dir={cache_dir}", "--n_test=50", "--eval_every=0",
              "--checkpoint_every=1000", "--log_every=1"]
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, str(ROOT / "tools" / "train.py"), *common, "--steps=100000",
                             f"--out={run}"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("step") and " loss " in line and int(line.split()[1]) >= 5:
            proc.send_signal(sig)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and f"stopped by {sig.name} after step" in err, err
    stopped_at = int(err.split(f"stopped by {sig.name} after step ")[1].split(";")[0])
    state, _ = checkpoint.load_checkpoint(run / "checkpoint.npz")
    assert state.step == stopped_at and not [p for p in os.listdir(run) if p.endswith(".tmp")]
    resume = err.strip().splitlines()[-1].strip()
    assert resume.startswith("python ") and resume.endswith("--resume") and f"--out={run}" in resume
    total = stopped_at + 3
    rc, out, err = _tool("train.py", *common, f"--steps={total}", f"--out={run}", "--resume")
    assert rc == 0 and f"at step {stopped_at}" in out, err
    rc, _, err = _tool("train.py", *common, f"--steps={total}", f"--out={tmp_path / 'whole'}")
    assert rc == 0, err
    whole = json.loads((tmp_path / "whole" / "result.json").read_text())
    assert json.loads((run / "result.json").read_text())["weights_sha256"] == whole["weights_sha256"]


def test_one_line_on_interrupt_before_training(cache_dir, tmp_path):
    """Ctrl-C outside a training loop (start-up, conversion, evaluation) is one line and exit 130."""
    proc = subprocess.Popen([sys.executable, "-c", (
        "import sys, signal; sys.path.insert(0, 'tools'); import _cli\n"
        "def main(argv):\n"
        "    signal.raise_signal(signal.SIGINT)\n"
        "_cli.run(main)")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a test run started in the background (nohup, `&`) ignores SIGINT, and the child would inherit that
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err and "interrupted (SIGINT)" in err, err


@pytest.fixture(scope="module")
def keras_files(fewshot_task, tmp_path_factory):
    """A small tf_keras Sequential CNN saved as .h5 (and broken copies), with real images to calibrate on."""
    from converters.keras_compat import keras
    d = tmp_path_factory.mktemp("keras")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.layers.Conv2D(8, 3, strides=2, activation="relu", input_shape=(32, 32, 3)),
                              keras.layers.Conv2D(8, 3, strides=2, activation="relu"),
                              keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(10)])
    model.save(d / "seq.h5")
    (d / "truncated.h5").write_bytes((d / "seq.h5").read_bytes()[:3000])
    (d / "text.h5").write_text("not a model\n")
    t = fewshot_task
    np.savez(d / "data.npz", x_train=t.x_support, y_train=t.y_support, x_test=t.x_test[:100], y_test=t.y_test[:100])
    np.savez(d / "shifted.npz", x_train=t.x_support, y_train=t.y_support + 5)
    np.savez(d / "five.npz", x_train=t.x_support[t.y_support < 5], y_train=t.y_support[t.y_support < 5])
    np.savez(d / "x_only.npz", x_train=t.x_support)
    return d


CONVERT_MISTAKES = [
    (["--keras_model=K/truncated.h5", "--data=K/data.npz"], ["truncated.h5 cannot be loaded as a tf_keras model"]),
    (["--keras_model=K/text.h5", "--data=K/data.npz"], ["text.h5 cannot be loaded"]),
    (["--keras_model=K/none.h5", "--data=K/data.npz"], ["none.h5: no such file"]),
    (["--keras_model=K/seq.h5", "--data=K/data.npz", "--new_head=5"], ["y_train: labels out of range [0, 5)"]),
    (["--keras_model=K/seq.h5", "--data=K/shifted.npz", "--new_head=10"], ["min 5, max 14"]),
    (["--keras_model=K/seq.h5", "--data=K/five.npz", "--new_head=10"], ["no example of class(es) [5, 6, 7, 8, 9]"]),
    (["--keras_model=K/seq.h5", "--data=K/x_only.npz", "--new_head=10"], ["--new_head needs y_train"]),
    (["--keras_model=K/seq.h5", "--data=K/data.npz", "--new_head=1"], ["--new_head=1"]),
    (["--keras_model=K/seq.h5", "--data=K/data.npz", "--new_head=-1"], ["--new_head=-1"]),
    (["--keras_model=K/seq.h5", "--data=K/data.npz", "--trainable=dense_9"], ["unknown trainable layer(s) ['dense_9']"]),
    (["--new_head=10"], ["--new_head only apply with --keras_model"]),
]


@pytest.mark.parametrize("args, needles", CONVERT_MISTAKES, ids=[" ".join(a) for a, _ in CONVERT_MISTAKES])
def test_convert_mistakes_are_one_line(keras_files, tmp_path, args, needles):
    args = [a.replace("K/", f"{keras_files}/") for a in args]
    rc, out, err = _tool("convert.py", *args, f"--out={tmp_path / 'm.tflite'}")
    assert_one_line_error(rc, out, err, *needles)
    assert not list(tmp_path.iterdir())


def test_sequential_keras_model_converts_and_trains_from_the_command_line(keras_files, tmp_path):
    """The README's quickstart with a Sequential model: convert with a new head, train, evaluate."""
    model = tmp_path / "seq.tflite"
    rc, out, err = _tool("convert.py", f"--keras_model={keras_files / 'seq.h5'}", f"--data={keras_files / 'data.npz'}",
                         "--new_head=10", "--trainable=last:2", f"--out={model}")
    assert rc == 0 and "trainable parameters" in out, err[-3000:]
    rc, out, err = _tool("train.py", f"--model={model}", f"--data={keras_files / 'data.npz'}", "--steps=20",
                         "--eval_every=0", f"--out={tmp_path / 'run'}")
    assert rc == 0 and "done: test accuracy" in out, err[-3000:]
    rc, out, err = _tool("evaluate.py", f"--model={tmp_path / 'run' / 'trained.tflite'}",
                         f"--data={keras_files / 'data.npz'}")
    assert rc == 0 and "infer" in out, err[-3000:]
