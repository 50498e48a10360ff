"""Accuracy of a converted or exported model on the default task's test images (or --data).

  python tools/evaluate.py --model=runs/a/trained.tflite
"""
import _paths  # noqa: F401

from absl import flags

import _cli

from tflite_fg import datafile, tasks
from tflite_fg.model import ENGINES, FgModel

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "A tflite_fg .tflite (with its .json).", required=True)
flags.DEFINE_string("data", None, "Own data: .npz with x_test, y_test (preprocessed float).")
flags.DEFINE_integer("shots", 20, "Default task: shots of the split (the test images do not depend on it).",
                     lower_bound=1)
flags.DEFINE_integer("n_test", 1000, "Default task: held-out test images.", lower_bound=1)
flags.DEFINE_integer("data_seed", 0, "Default task: split seed.", lower_bound=0)
flags.DEFINE_enum("engine", "xnnpack", sorted(ENGINES), "LiteRT kernels.")
flags.DEFINE_string("cache_dir", None, "Asset cache.")


def main(argv):
    del argv
    if FLAGS.data:
        _cli.refuse_ignored(("shots", "n_test", "data_seed"), "choose the default task's test images and have no "
                            "effect with --data")
    model = FgModel(FLAGS.model, engine=FLAGS.engine)
    if FLAGS.data:
        arrays = datafile.load_npz(FLAGS.data, ("x_test", "y_test"))
        x, y = arrays["x_test"], arrays["y_test"]
    else:
        t = tasks.load_fmnist_fewshot(FLAGS.shots, FLAGS.n_test, FLAGS.data_seed, FLAGS.cache_dir)
        x, y = t.x_test, t.y_test
    x, y, warning = datafile.check_split(x, y, "test", model.meta.input_shape, model.meta.num_classes,
                                         model.input_range(), FLAGS.data or "")
    if warning:
        print(warning)
    xq = model.quantize_input(x)
    acc_infer = model.accuracy(xq, y)
    acc_forward = model.accuracy(xq, y, model.initial_params())
    print(f"{FLAGS.model}: {len(y)} test examples, engine {FLAGS.engine}")
    print(f"  infer   (deployable graph)          accuracy {acc_infer:.4f}")
    print(f"  forward (stored trainable tensors)  accuracy {acc_forward:.4f}")


if __name__ == "__main__":
    _cli.run(main)
