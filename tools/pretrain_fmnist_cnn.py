"""Pretrain the fmnist-c benchmark's small CNN on clean Fashion-MNIST train (backprop, deterministic).

  python tools/pretrain_fmnist_cnn.py            # reuse the cached weights if the recipe is unchanged
  python tools/pretrain_fmnist_cnn.py --force    # retrain and overwrite them

Writes <cache>/models/fmnist_cnn/fmnist_cnn.h5 and fmnist_cnn.json (recipe, clean test accuracy,
TensorFlow version, sha256); the recipe is converters.fmnist_cnn.RECIPE.
"""
import _paths  # noqa: F401

from absl import flags

import _cli

from converters import fmnist_cnn
from tflite_fg import assets

FLAGS = flags.FLAGS
flags.DEFINE_string("cache_dir", None, "Asset cache (default $TFLITE_FG_CACHE or ~/.cache/tflite_fg).")
flags.DEFINE_bool("force", False, "Retrain even if cached weights match the recipe.")


def main(argv):
    del argv
    assets.ensure_assets(FLAGS.cache_dir, which=("fashion_mnist",), log=print)
    fmnist_cnn.load_or_train(FLAGS.cache_dir, log=print, force=FLAGS.force)
    stamp = fmnist_cnn.read_stamp(FLAGS.cache_dir)
    print(f"{fmnist_cnn.NAME}: clean test accuracy {stamp['clean_test_accuracy']:.4f} "
          f"({stamp['params']} parameters, trained in {stamp['train_seconds']}s with TensorFlow {stamp['tf_version']})")
    print(f"weights: {fmnist_cnn.weights_path(FLAGS.cache_dir)}")


if __name__ == "__main__":
    _cli.run(main)
