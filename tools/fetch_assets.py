"""Fetch and verify the pretrained models and Fashion-MNIST into the asset cache.

Why a script: a one-time, explicit step (and a clear error) before training or
tests; the logic lives in tflite_fg.assets.

    python tools/fetch_assets.py [--cache_dir DIR] [--only models,fashion_mnist]
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from absl import app, flags  # noqa: E402

import _cli  # noqa: E402

from tflite_fg import assets  # noqa: E402

_CACHE_DIR = flags.DEFINE_string(
    "cache_dir", None, f"Asset cache directory (default: ${assets.ENV_VAR} or ~/.cache/tflite_fg).")
_ONLY = flags.DEFINE_list(
    "only", list(assets.GROUPS), f"Comma-separated asset groups to fetch, from {list(assets.ALL_GROUPS)}.")


def main(argv: list[str]) -> None:
    del argv
    unknown = [g for g in _ONLY.value if g not in assets.ALL_GROUPS]
    if unknown:
        raise app.UsageError(f"--only: unknown group(s) {unknown}; choose from {list(assets.ALL_GROUPS)}")
    root = assets.ensure_assets(_CACHE_DIR.value, which=_ONLY.value, log=print)
    files = [root / rel for g in _ONLY.value for rel in assets.group_files(g)]
    total = sum(f.stat().st_size for f in files)
    print(f"cache: {root}")
    print(f"{len(files)} files verified ({', '.join(_ONLY.value)}), {total / 1e6:.1f} MB total")


if __name__ == "__main__":
    _cli.run(main)
