"""mlcourse.distributed.WorkerGroup, with both ways of starting the workers: one process
group, results by rank, a failing rank's traceback, a hung rank, and no process left behind.
(Lesson 07 uses it throughout; these tests check it on its own.)"""

from __future__ import annotations

import os
import sys
import time

import cloudpickle
import psutil
import pytest

from mlcourse.distributed import START_METHODS, WorkerError, WorkerGroup

METHODS = [m for m in START_METHODS if m != "template" or sys.platform.startswith("linux")]

# The functions must travel by value, as a notebook cell's do: the workers cannot import
# this test module by name.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def rank_and_pid() -> tuple[int, int]:
    import torch.distributed as dist

    return dist.get_rank(), os.getpid()


def all_reduce_of_rank_plus_one() -> float:
    import torch
    import torch.distributed as dist

    value = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(value)
    return float(value)


def fail_on_rank_one() -> str:
    import torch.distributed as dist

    if dist.get_rank() == 1:
        raise ValueError("rank 1 was told to fail")
    return "fine"


def sleep_forever() -> None:
    time.sleep(3600)


def _gone(pids: list[int], within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        alive = [p for p in pids if psutil.pid_exists(p)]
        alive = [p for p in alive if psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("method", METHODS)
def test_workers_form_one_group_and_stop_when_closed(method):
    with WorkerGroup(2, start_method=method) as workers:
        answers = workers.run(rank_and_pid)
        assert [rank for rank, _ in answers] == [0, 1]
        pids = [pid for _, pid in answers]
        assert len(set(pids)) == 2 and os.getpid() not in pids
        assert workers.run(all_reduce_of_rank_plus_one) == [3.0, 3.0]
        assert workers.run(rank_and_pid, ranks=[1])[0][0] == 1
    assert workers.closed
    assert _gone(pids), f"workers {pids} outlived their group"


@pytest.mark.parametrize("method", METHODS)
def test_a_failing_rank_reports_its_traceback_and_a_hung_one_is_stopped(method):
    workers = WorkerGroup(2, start_method=method, timeout=60)
    try:
        pids = [pid for _, pid in workers.run(rank_and_pid)]
        with pytest.raises(WorkerError, match=r"failed on rank 1(.|\n)*rank 1 was told to fail"):
            workers.run(fail_on_rank_one)
        with pytest.raises(WorkerError, match="did not finish within 1 s"):
            workers.run(sleep_forever, timeout=1)
        assert workers.closed
        with pytest.raises(WorkerError, match="closed"):
            workers.run(rank_and_pid)
    finally:
        workers.close()
    assert _gone(pids), f"workers {pids} outlived their group"


def test_bad_arguments_name_the_accepted_values():
    with pytest.raises(ValueError, match="start_method") as caught:
        WorkerGroup(2, start_method="fork")
    assert "template" in str(caught.value) and "spawn" in str(caught.value)
    with WorkerGroup(1) as workers, pytest.raises(ValueError, match=r"ranks=\[1\]"):
        workers.run(rank_and_pid, ranks=[1])
