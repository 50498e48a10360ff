"""Convert a Keras model into an int8 .tflite with a `forward` training signature (+ metadata).

  python tools/convert.py                      # the default task: ResNet-8 + prototype head, FMNIST
  python tools/convert.py --keras_model=m.h5 --data=d.npz --trainable=last:2 --out=m.tflite
"""
import _paths  # noqa: F401

import pathlib
import time

from absl import app, flags

import _cli

from converters import graph_surgery, pipeline, tasks as ctasks
from converters.keras_compat import keras
from tflite_fg import assets, datafile, runs, tasks
from tflite_fg.errors import UserError

FLAGS = flags.FLAGS
flags.DEFINE_string("keras_model", None, "A tf_keras .h5/.keras model; unset: the default task's ResNet-8.")
flags.DEFINE_string("data", None, "With --keras_model: .npz with x_train (preprocessed float, used as "
                    "representative data) and, for --new_head, y_train.")
flags.DEFINE_integer("new_head", 0, "With --keras_model: replace the last Dense by a prototype head of this "
                     "many classes built from x_train/y_train (0: keep the model's head).", lower_bound=0)
flags.DEFINE_string("trainable", "last:4", "Trainable layers: comma-separated names, 'head', or 'last:N'.")
flags.DEFINE_float("headroom", 1.0, "Trainable kernel range = headroom * max|w| (>= 1).", lower_bound=1.0)
flags.DEFINE_float("output_headroom", pipeline.OUTPUT_HEADROOM, "int8 logits range = this * the starting head's "
                   "(>= 1): room for the margins training grows.", lower_bound=1.0)
flags.DEFINE_integer("shots", 20, "Default task: labelled training images per class.", lower_bound=1)
flags.DEFINE_integer("data_seed", 0, "Default task: seed of the support/test split.", lower_bound=0)
flags.DEFINE_string("cache_dir", None, "Asset cache (default $TFLITE_FG_CACHE or ~/.cache/tflite_fg).")
flags.DEFINE_string("out", None, "Output .tflite path (metadata goes to <out>.json).")
flags.register_validator("new_head", lambda n: n != 1, "--new_head=1: a classifier needs >= 2 classes (0 keeps the head)")


def _load_keras_model(path: str):
    if not pathlib.Path(path).is_file():
        raise UserError(f"--keras_model={path}: no such file")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as e:  # h5py, zipfile, Keras deserialization: any failure means "not a loadable model"
        raise UserError(f"--keras_model={path} cannot be loaded as a tf_keras model ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); give an .h5 or .keras file saved by tf_keras "
                        "(Keras 2), complete and untruncated") from e


def _custom_model():
    if not FLAGS.data:
        raise app.UsageError("--keras_model needs --data=<npz with x_train[, y_train]> for calibration")
    arrays = datafile.load_npz(FLAGS.data, ("x_train",), ("y_train",))
    model = _load_keras_model(FLAGS.keras_model)
    if len(model.inputs) != 1:
        raise UserError(f"--keras_model={FLAGS.keras_model} has {len(model.inputs)} inputs; only single-input models "
                        "convert")
    shape = tuple(model.inputs[0].shape[1:])
    x = arrays["x_train"]
    if None in shape and x.ndim == len(shape) + 1:  # a free dimension takes the data's size
        shape = tuple(d if d is not None else x.shape[1 + i] for i, d in enumerate(shape))
    x = datafile.check_examples(x, f"{FLAGS.data}:x_train", shape)
    if FLAGS.new_head:
        if "y_train" not in arrays:
            raise app.UsageError(f"--new_head needs y_train in {FLAGS.data} (the prototype of each class)")
        y = datafile.check_labels(arrays["y_train"], f"{FLAGS.data}:y_train", len(x), FLAGS.new_head)
        datafile.check_every_class(y, f"{FLAGS.data}:y_train", FLAGS.new_head)
        model = ctasks.prototype_model(model, x, y, FLAGS.new_head)
    cfg = pipeline.ConvertConfig(trainable=FLAGS.trainable, headroom=FLAGS.headroom,
                                 output_headroom=FLAGS.output_headroom, source={"model": FLAGS.keras_model})
    try:
        return pipeline.convert_keras_model(model, cfg, x)
    except graph_surgery.GraphError as e:
        raise graph_surgery.GraphError(f"--keras_model={FLAGS.keras_model}: {e}") from e


def main(argv):
    del argv
    t0 = time.time()
    if FLAGS.keras_model:
        if not FLAGS.out:
            raise app.UsageError("--keras_model needs --out")
        _cli.refuse_ignored(("shots", "data_seed"), "choose the default task's data; with --keras_model, --data "
                            "gives it")
        model_bytes, meta = _custom_model()
        out = FLAGS.out
    else:
        _cli.refuse_ignored(("data", "new_head"), "only apply with --keras_model")
        assets.ensure_assets(FLAGS.cache_dir, log=print)
        task = tasks.load_fmnist_fewshot(FLAGS.shots, 1, FLAGS.data_seed, FLAGS.cache_dir)
        try:
            model_bytes, meta = ctasks.convert_fmnist_fewshot(task, FLAGS.trainable, FLAGS.headroom, FLAGS.cache_dir,
                                                                output_headroom=FLAGS.output_headroom)
        except graph_surgery.GraphError as e:  # the layer choice
            raise graph_surgery.GraphError(f"--trainable={FLAGS.trainable}: {e}") from e
        out = FLAGS.out or runs.default_model_path("fmnist", FLAGS.shots, FLAGS.data_seed, FLAGS.trainable, FLAGS.cache_dir)
    pipeline.save(out, model_bytes, meta)
    print(f"wrote {out} ({len(model_bytes) / 1024:.1f} KiB) + {out}.json in {time.time() - t0:.1f}s")
    for t in meta.trainable:
        print(f"  trainable {t.layer:<16} {t.op:<16} {str(t.shape):<18} scale {t.scale:.3g}")
    print(f"  trainable parameters: {sum(t.size for t in meta.trainable)}")


if __name__ == "__main__":
    _cli.run(main)
