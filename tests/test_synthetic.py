import pytest
import torch

from mlcourse.synthetic import (
    make_classification_2d,
    make_sequence_task,
    make_sine,
)


def test_known_values_are_the_same_on_every_machine():
    # PCG64 streams are platform independent: these digits must never change.
    x, _ = make_sine(3, noise=0.0, seed=0)
    assert [round(v, 6) for v in x.tolist()] == [0.636962, 0.269787, 0.040974]


def test_sine_shapes_and_values():
    x, y = make_sine(50, noise=0.0, seed=3, low=-1.0, high=2.0)
    assert x.min() >= -1.0 and x.max() <= 2.0
    assert torch.allclose(y, torch.sin(2 * torch.pi * x), atol=1e-5)


@pytest.mark.parametrize("kind", ["blobs", "moons", "circles", "spirals"])
def test_classification_2d_is_balanced(kind):
    X, y = make_classification_2d(300, kind=kind, seed=0)
    assert X.shape == (300, 2) and X.dtype == torch.float32
    assert torch.bincount(y).tolist() == [150, 150]


def test_classification_2d_more_classes_and_errors():
    _, y = make_classification_2d(90, kind="spirals", n_classes=3)
    assert torch.bincount(y).tolist() == [30, 30, 30]
    with pytest.raises(ValueError, match="kind='moons' has exactly 2 classes"):
        make_classification_2d(10, kind="moons", n_classes=3)
    with pytest.raises(ValueError, match="kind='swirl' is not supported; expected one of 'blobs'"):
        make_classification_2d(10, kind="swirl")


@pytest.mark.parametrize("task", ["copy", "reverse", "sort"])
def test_sequence_tasks(task):
    x, y = make_sequence_task(64, task=task, length=8, vocab_size=10, seed=0)
    assert x.shape == y.shape == (64, 8) and x.dtype == torch.int64
    assert int(x.max()) < 10
    expected = {"copy": x, "reverse": x.flip(1), "sort": x.sort(dim=1).values}[task]
    assert torch.equal(y, expected)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_sine(0), "n_samples=0 is out of range"),
        (lambda: make_sine(5, noise=-1.0), "noise=-1.0 is out of range"),
        (lambda: make_sine(5, low=1.0, high=1.0), "high=1.0 is out of range"),
        (lambda: make_sequence_task(5, task="shuffle"), "task='shuffle' is not supported"),
        (lambda: make_sequence_task(5, vocab_size=1), "vocab_size=1 is out of range"),
        (lambda: make_sine(5, seed=-3), "seed=-3 is out of range"),
    ],
)
def test_bad_arguments_are_named(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
