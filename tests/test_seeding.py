import os
import random

import numpy as np
import pytest
import torch

from mlcourse.seeding import (
    capture_rng_state,
    make_generator,
    restore_rng_state,
    seed_everything,
    seed_worker,
    set_deterministic,
)


def draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_same_seed_same_numbers_in_every_library():
    seed_everything(7)
    first = draw()
    seed_everything(7)
    assert draw() == first
    seed_everything(8)
    assert draw() != first


def test_report_says_what_was_seeded():
    report = seed_everything(3)
    assert report.seed == 3
    assert report.python and report.numpy and report.torch_cpu
    assert report.torch_cuda == torch.cuda.is_available()
    assert report.as_dict()["deterministic"] is False


def test_deterministic_mode_switches_torch_flags():
    try:
        report = seed_everything(0, deterministic=True)
        assert report.deterministic
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] in (":4096:8", ":16:8")
    finally:
        set_deterministic(False)
    assert not torch.are_deterministic_algorithms_enabled()


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "0", True, None])
def test_bad_seeds_are_rejected(bad):
    with pytest.raises((TypeError, ValueError), match="seed"):
        seed_everything(bad)


def test_generator_and_worker_seeding_make_loaders_repeatable():
    def epoch_order(seed):
        loader = torch.utils.data.DataLoader(
            torch.arange(20), batch_size=5, shuffle=True, num_workers=2,
            worker_init_fn=seed_worker, generator=make_generator(seed),
        )  # fmt: skip
        return torch.cat(list(loader)).tolist()

    assert epoch_order(1) == epoch_order(1)
    assert epoch_order(1) != epoch_order(2)


def test_seed_worker_copies_torch_seed_to_numpy_and_random():
    torch.manual_seed(123)
    seed_worker(0)
    a = (random.random(), np.random.rand())
    torch.manual_seed(123)
    seed_worker(0)
    assert (random.random(), np.random.rand()) == a


def test_rng_state_survives_a_weights_only_round_trip(tmp_path):
    seed_everything(11)
    draw()  # move every generator, and leave a cached NumPy gaussian behind
    np.random.standard_normal()
    random.gauss(0, 1)
    torch.save(capture_rng_state(), tmp_path / "rng.pt")
    expected = (draw(), float(np.random.standard_normal()), random.gauss(0, 1))
    seed_everything(99)
    restore_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (draw(), float(np.random.standard_normal()), random.gauss(0, 1)) == expected
    with pytest.raises(ValueError, match=r"state lacks \['numpy', 'python'\]"):
        restore_rng_state({"torch": torch.get_rng_state(), "cuda": []})
