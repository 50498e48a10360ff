"""Convert a Keras model into an int8 .tflite with a `forward` training signature (+ metadata).

  python tools/convert.py                      # the default task: ResNet-8 + prototype head, FMNIST
  python tools/convert.py --keras_model=m.h5 --data=d.npz --trainable=last:2 --out=m.tflite
"""
import _paths  # noqa: F401

import time

import numpy as np
from absl import app, flags

from converters import pipeline, tasks as ctasks
from converters.keras_compat import keras
from tflite_fg import assets, runs, tasks

FLAGS = flags.FLAGS
flags.DEFINE_string("keras_model", None, "A tf_keras .h5/.keras model; unset: the default task's ResNet-8.")
flags.DEFINE_string("data", None, "With --keras_model: .npz with x_train (preprocessed float, used as "
                    "representative data) and, for --new_head, y_train.")
flags.DEFINE_integer("new_head", 0, "With --keras_model: replace the last Dense by a prototype head of this "
                     "many classes built from x_train/y_train (0: keep the model's head).")
flags.DEFINE_string("trainable", "last:4", "Trainable layers: comma-separated names, 'head', or 'last:N'.")
flags.DEFINE_float("headroom", 1.0, "Trainable kernel range = headroom * max|w| (>= 1).")
flags.DEFINE_integer("shots", 20, "Default task: labelled training images per class.")
flags.DEFINE_integer("data_seed", 0, "Default task: seed of the support/test split.")
flags.DEFINE_string("cache_dir", None, "Asset cache (default $TFLITE_FG_CACHE or ~/.cache/tflite_fg).")
flags.DEFINE_string("out", None, "Output .tflite path (metadata goes to <out>.json).")


def _custom_model():
    if not FLAGS.data:
        raise app.UsageError("--keras_model needs --data=<npz with x_train[, y_train]> for calibration")
    with np.load(FLAGS.data, allow_pickle=False) as d:
        x = d["x_train"].astype(np.float32)
        y = d["y_train"].astype(np.int64) if "y_train" in d else None
    model = keras.models.load_model(FLAGS.keras_model, compile=False)
    if FLAGS.new_head:
        if y is None:
            raise app.UsageError("--new_head needs y_train in --data")
        model = ctasks.prototype_model(model, x, y, FLAGS.new_head)
    cfg = pipeline.ConvertConfig(trainable=FLAGS.trainable, headroom=FLAGS.headroom,
                                 source={"model": FLAGS.keras_model})
    return pipeline.convert_keras_model(model, cfg, x)


def main(argv):
    del argv
    t0 = time.time()
    if FLAGS.keras_model:
        if not FLAGS.out:
            raise app.UsageError("--keras_model needs --out")
        model_bytes, meta = _custom_model()
        out = FLAGS.out
    else:
        assets.ensure_assets(FLAGS.cache_dir, log=print)
        task = tasks.load_fmnist_fewshot(FLAGS.shots, 1, FLAGS.data_seed, FLAGS.cache_dir)
        model_bytes, meta = ctasks.convert_fmnist_fewshot(task, FLAGS.trainable, FLAGS.headroom, FLAGS.cache_dir)
        out = FLAGS.out or runs.default_model_path("fmnist", FLAGS.shots, FLAGS.data_seed, FLAGS.trainable, FLAGS.cache_dir)
    pipeline.save(out, model_bytes, meta)
    print(f"wrote {out} ({len(model_bytes) / 1024:.1f} KiB) + {out}.json in {time.time() - t0:.1f}s")
    for t in meta.trainable:
        print(f"  trainable {t.layer:<16} {t.op:<16} {str(t.shape):<18} scale {t.scale:.3g}")
    print(f"  trainable parameters: {sum(t.size for t in meta.trainable)}")


if __name__ == "__main__":
    app.run(main)
