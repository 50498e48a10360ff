"""The runtime is what ships to the device: importing it must not pull in TensorFlow."""
import subprocess
import sys

MODULES = ["tflite_fg", "tflite_fg.model", "tflite_fg.trainer", "tflite_fg.export", "tflite_fg.objective",
           "tflite_fg.tasks", "tflite_fg.checkpoint", "tflite_fg.build", "tflite_fg.runs", "tflite_fg.flatbuf"]


def test_runtime_does_not_import_tensorflow():
    code = ("import sys\n" + "".join(f"import {m}\n" for m in MODULES) +
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'keras', "
            "'tensorflow_model_optimization', 'absl')]\nassert not bad, bad\nprint('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
