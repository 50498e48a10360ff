"""Shared pytest fixtures."""

from __future__ import annotations

import pathlib

import pytest

from tflite_fg.assets import ensure_assets


@pytest.fixture(scope="session")
def cache_dir() -> pathlib.Path:
    """Resolved asset cache, fetched and verified once per test session (real downloads)."""
    return ensure_assets()


@pytest.fixture(scope="session")
def fewshot_task(cache_dir):
    """The default task at a smaller test split (real Fashion-MNIST images)."""
    from tflite_fg import tasks
    return tasks.load_fmnist_fewshot(shots=20, n_test=1000, seed=0, cache=cache_dir)


def _convert(task, trainable, out_dir, cache_dir):
    from converters import pipeline, tasks as ctasks
    path = out_dir / f"model_{trainable.replace(':', '')}.tflite"
    pipeline.save(path, *ctasks.convert_fmnist_fewshot(task, trainable, cache=cache_dir))
    return path


@pytest.fixture(scope="session")
def block_model_path(fewshot_task, cache_dir, tmp_path_factory):
    """ResNet-8 + prototype head, last residual block and head trainable (the default task's model)."""
    return _convert(fewshot_task, "last:4", tmp_path_factory.mktemp("conv"), cache_dir)


@pytest.fixture(scope="session")
def head_model_path(fewshot_task, cache_dir, tmp_path_factory):
    """The same network with only the head trainable (fast training tests)."""
    return _convert(fewshot_task, "head", tmp_path_factory.mktemp("conv"), cache_dir)
