"""The training command under torchrun: data-parallel runs that take the steps a single
process takes, write as one, resume after any rank is killed, and refuse bad launches."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from mlcourse.distributed import UNIT_ROUNDOFF_FP32, softmax_regression_gradient_bound
from mlcourse.training.checkpoints import latest_checkpoint
from mlcourse.training.cli import EXIT_OK, EXIT_USAGE, build_parser, main
from mlcourse.training.distributed import (
    DistributedSetupError,
    Launch,
    backend_for,
    disagreements,
    launch_from_environment,
)
from mlcourse.training.planning import plan_runs
from mlcourse.training.runs import read_metrics
from mlcourse.training.shards import (
    ShardedBatchSampler,
    check_shards,
    global_batch_size,
    rank_seed,
    shard_loss_weight,
)
from mlcourse.training.state import build_parts

ROOT = Path(__file__).resolve().parent.parent
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
# configs/digits_ddp.yaml, shortened: 1107 training digits in global batches of 64 make 18
# steps per epoch (the last one holds 19 digits: 10 on rank 0, 9 on rank 1).
EPOCHS, STEPS_PER_EPOCH = 3, 18
SHORT = [f"--set=epochs={EPOCHS}", "--set=checkpoint_every=10", "--no-progress", "--quiet"]
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")

# The training command with a hook that makes one rank stop after a given step, so that the
# test can kill exactly that rank at a known point (the hook is this test's, passed to main()).
HANGING_RANK = """
import os, sys, time
from mlcourse.training.cli import main

step_to_hang, rank_to_hang = int(sys.argv[1]), int(sys.argv[2])

def hang(step):
    if step == step_to_hang and int(os.environ["RANK"]) == rank_to_hang:
        print(f"test hook: rank {rank_to_hang} pid {os.getpid()} hangs", flush=True)
        while True:
            time.sleep(1)

sys.exit(main(sys.argv[3:], on_step=hang))
"""


@pytest.fixture(autouse=True)
def no_outside_launch(monkeypatch):
    """Each test sets the launcher's variables it wants; none leak in from outside."""
    for name in (*TORCHRUN_VARIABLES, "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)


def clean_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARIABLES}


def torchrun(*arguments: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*TORCHRUN, *arguments], cwd=cwd, env=clean_environment(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def kill_rank_when_it_hangs(process: subprocess.Popen, deadline_s: float = 240) -> list[str]:
    """Read the launch's output until the hook reports; SIGKILL that rank; wait for torchrun."""
    seen, deadline = [], time.monotonic() + deadline_s
    for line in process.stdout:
        seen.append(line)
        if "test hook:" in line:
            os.kill(int(line.split(" pid ")[1].split()[0]), signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "".join(seen)
    seen += process.stdout.readlines()
    process.wait(timeout=120)
    return seen


def parameters(run: Path) -> dict[str, torch.Tensor]:
    return latest_checkpoint(run).state["model"]


def flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([state[k].double().flatten() for k in sorted(state)])


# --- one real data-parallel run, killed and resumed, against a single process ------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Torchrun runs of configs/digits_ddp.yaml (2 ranks, gloo): 'whole' runs through
    (tracked in MLflow); 'victim' loses rank 1 to SIGKILL after step 25 (5 steps after its
    checkpoint at step 20), is resumed, loses rank 0 (the writer) after step 45, and is
    resumed again."""
    folder = tmp_path_factory.mktemp("ddp")
    config = ["--config", str(ROOT / "configs" / "digits_ddp.yaml"), "--runs-dir", "runs"]
    script = folder / "hanging_rank.py"
    script.write_text(HANGING_RANK)
    victim = [*config, *SHORT, "--run-name", "victim"]
    whole = torchrun("-m", "mlcourse.train", *config, *SHORT, "--run-name", "whole", "--mlflow",
                     cwd=folder)  # fmt: skip
    killed = [kill_rank_when_it_hangs(torchrun(str(script), "25", "1", *victim, cwd=folder))]
    out, _ = whole.communicate(timeout=300)
    assert whole.returncode == 0, out
    resumed = torchrun(str(script), "45", "0", *victim, "--resume", cwd=folder)
    killed.append(kill_rank_when_it_hangs(resumed))
    final = torchrun("-m", "mlcourse.train", *victim, "--resume", cwd=folder)
    final_out, _ = final.communicate(timeout=300)
    assert final.returncode == 0, final_out
    return {"folder": folder, "whole_output": out, "killed": killed}


def test_a_run_resumed_after_any_rank_was_killed_ends_bitwise_as_if_never_stopped(runs):
    folder = runs["folder"] / "runs"
    for rank, output in zip((1, 0), runs["killed"], strict=True):
        assert f"test hook: rank {rank} pid" in "".join(output)
    victim = folder / "victim"
    whole = parameters(folder / "whole")
    assert all(torch.equal(parameters(victim)[k], whole[k]) for k in whole)
    assert read_metrics(victim) == read_metrics(folder / "whole")
    summary = json.loads((victim / "summary.json").read_text())
    assert summary["sessions"] == 3 and summary["world_size"] == 2
    assert summary["steps"] == EPOCHS * STEPS_PER_EPOCH
    for session, step in ((1, 20), (2, 40)):
        record = json.loads((victim / f"run_record.resume-{session}.json").read_text())
        assert record["run"]["resumed_from"]["step"] == step
        assert record["distributed"]["world_size"] == 2


def test_rank0_alone_writes_and_records_every_rank_s_shard(runs):
    folder = runs["folder"] / "runs"
    run = folder / "whole"
    # one line per epoch, one record, one checkpoint per save, one MLflow run
    assert len(read_metrics(run)) == EPOCHS
    assert sorted(p.name for p in run.glob("run_record*.json")) == ["run_record.json"]
    saved_at = sorted(json.loads(p.read_text())["metrics"]["step"]
                      for p in run.glob("checkpoints/*/*/*/metadata.json"))  # fmt: skip
    assert saved_at == [10, 20, 30, 40, 50, 54]  # every 10 steps, and the final one
    with sqlite3.connect(folder / "mlflow.db") as db:
        names = [row[0] for row in db.execute("select name from runs")]
        steps = db.execute(
            "select count(*) from metrics m join runs r on m.run_uuid = r.run_uuid "
            "where r.name = 'whole' and m.key = 'val_accuracy'"
        ).fetchone()[0]
    assert names == ["whole"] and steps == EPOCHS
    tags = dict(sqlite3.connect(folder / "mlflow.db").execute("select key, value from tags"))
    assert tags["mlcourse.world_size"] == "2"
    # the output: rank 0 speaks for both
    assert runs["whole_output"].count("run 'whole':") == 1

    record = json.loads((run / "run_record.json").read_text())["distributed"]
    assert record["world_size"] == 2 and record["global_batch_size"] == 64
    assert record["backend"] == "gloo" and record["backend_chosen_for"] == "cpu"
    assert record["same_numerics_on_every_rank"] is True
    shards = record["shards"]
    assert [s["rank"] for s in shards] == [0, 1]
    assert [s["examples_per_epoch"] for s in shards] == [554, 553]
    assert shards[0]["seed"] == 0 and shards[1]["seed"] == rank_seed(0, 1) != 0
    # Independently of the command: the single-process order of the first epoch, each global
    # batch split rank, rank + 2, ... gives exactly the recorded shards.
    expected = expected_first_epoch_shards(n_examples=1107, batch_size=64, seed=0, world_size=2)
    for shard, indices in zip(shards, expected, strict=True):
        digest = hashlib.sha256(torch.tensor(indices, dtype=torch.int64).numpy().tobytes())
        assert shard["first_epoch_sha256"] == digest.hexdigest()


def expected_first_epoch_shards(n_examples, batch_size, seed, world_size):
    """What a single-process DataLoader(shuffle=True) visits in its first epoch, split."""
    loader = torch.utils.data.DataLoader(
        range(n_examples), batch_size=batch_size, shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    batches = [batch.tolist() for batch in loader]
    return [[i for b in batches for i in b[r::world_size]] for r in range(world_size)]


def test_data_parallel_run_equals_one_process_within_the_derived_bound(runs, tmp_path):
    """The same steps as a single process at the same global batch: final weights within the
    float32 summation-order budget (lesson 07), final metrics within what that moves."""
    folder = runs["folder"] / "runs"
    config = ROOT / "configs" / "digits_ddp.yaml"
    args = ["--config", str(config), "--runs-dir", str(folder), *SHORT, "--run-name", "single"]
    assert main(args) == EXIT_OK
    single, ddp = parameters(folder / "single"), parameters(folder / "whole")

    # Replay the single-process run with the command's own parts, adding up the bound
    replay_args = build_parser().parse_args([*args[:2], "--runs-dir", str(tmp_path), *SHORT])
    [plan] = plan_runs(replay_args, [])
    parts, budget, lr = build_parts(plan), 0.0, plan.config.optimizer.lr
    lipschitz = 0.0  # of a batch's mean loss: at most lambda_max(X^T X / n) / 2
    for _ in range(plan.config.epochs):
        for xb, yb in parts.loader:
            model, layer = parts.model, parts.model[0]  # softmax regression: one Linear
            budget += lr * softmax_regression_gradient_bound(
                xb, yb, layer.weight, layer.bias, pieces=2
            )
            ones = torch.cat([xb.double(), torch.ones(len(xb), 1, dtype=torch.float64)], 1)
            lipschitz = max(
                lipschitz, float(torch.linalg.eigvalsh(ones.T @ ones / len(xb))[-1]) / 2
            )
            parts.optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            parts.optimizer.step()
            # and the rounding of each side's update, u |theta| per entry
            budget += 2 * UNIT_ROUNDOFF_FP32 * float(flat(model.state_dict()).norm())
    replayed = parts.model.state_dict()
    assert all(torch.equal(replayed[k], single[k]) for k in single), "the replay is faithful"
    assert lr <= 2 / lipschitz, "steps at lr < 2/L do not amplify differences (convex model)"

    drift = float((flat(ddp) - flat(single)).norm())
    assert drift <= budget, (drift, budget)
    assert budget < 1e-3  # a bound of use: far below the weights' own size
    a = json.loads((folder / "whole" / "summary.json").read_text())
    b = json.loads((folder / "single" / "summary.json").read_text())
    assert a["steps"] == b["steps"] and a["sizes"] == b["sizes"]
    # A loss moves by at most max ||(x, 1)|| * sqrt(2) * drift (the gradient of the
    # cross-entropy of a linear model in its weights is (p - y) x^T, |p - y| <= sqrt 2).
    for split in ("val", "test"):
        features = getattr(plan.data, split)[0]
        x = torch.cat([features, torch.ones(len(features), 1)], 1)
        lipschitz_loss = float(x.norm(dim=1).max()) * 2**0.5
        assert abs(a[f"{split}_loss"] - b[f"{split}_loss"]) <= lipschitz_loss * budget
        assert abs(a[f"{split}_accuracy"] - b[f"{split}_accuracy"]) <= fragile_share(
            single, x, lipschitz_loss * budget
        )


def fragile_share(state, x_with_ones, logit_shift):
    """Share of examples whose top-two logit margin is within what the drift can move."""
    weights = torch.cat([state["0.weight"], state["0.bias"][:, None]], 1)
    top2 = (x_with_ones @ weights.T).topk(2, dim=1).values
    return float(((top2[:, 0] - top2[:, 1]) <= 2 * logit_shift).double().mean())


def test_resuming_on_another_number_of_ranks_is_refused(runs, capsys):
    folder = runs["folder"] / "runs"
    config = str(ROOT / "configs" / "digits_ddp.yaml")
    args = ["--config", config, "--runs-dir", str(folder), *SHORT, "--run-name", "victim"]
    assert main([*args, "--resume"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "on 1 rank(s): it was started on 2" in err
    assert "torchrun --nproc-per-node 2 -m mlcourse.train ... --resume" in err


# --- launches that cannot work are refused with what to do -------------------------------------


def setup_error(monkeypatch, capsys, tmp_path, environment, *extra) -> str:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    runs = tmp_path / "runs"
    config = ROOT / "configs" / "digits_ddp.yaml"
    code = main(["--config", str(config), "--runs-dir", str(runs), *SHORT, *extra])
    assert code == EXIT_USAGE
    assert not runs.exists(), "nothing may be written"
    return capsys.readouterr().err


LAUNCH = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29555", "LOCAL_RANK": "0"}


def test_a_partial_launch_names_what_is_missing(monkeypatch, capsys, tmp_path):
    err = setup_error(monkeypatch, capsys, tmp_path, {"RANK": "0", "WORLD_SIZE": "2"})
    assert "MASTER_ADDR, MASTER_PORT are not" in err and "torchrun --nproc-per-node" in err
    assert "Nothing was written." in err


@pytest.mark.parametrize(
    "environment, message",
    [
        ({"RANK": "2", "WORLD_SIZE": "2"}, "RANK=2 is not a rank of WORLD_SIZE=2"),
        ({"RANK": "0", "WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
        ({"RANK": "0", "WORLD_SIZE": "0"}, "WORLD_SIZE=0 is out of range"),
        ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_PORT": "70000"}, "MASTER_PORT=70000"),
    ],
)
def test_inconsistent_launch_variables_are_refused(
    monkeypatch, capsys, tmp_path, environment, message
):
    err = setup_error(monkeypatch, capsys, tmp_path, {**LAUNCH, **environment})
    assert message in err


def test_a_world_size_larger_than_the_data_is_refused(monkeypatch, capsys, tmp_path):
    # 30 synthetic points give 20 training examples (hash split): 40 ranks cannot each get one
    err = setup_error(monkeypatch, capsys, tmp_path, {**LAUNCH, "RANK": "0", "WORLD_SIZE": "40"},
                      "--set=data.dataset=moons", "--set=data.n_samples=30",
                      "--set=batch_size=8")  # fmt: skip
    assert "WORLD_SIZE=40 ranks, but 'synthetic-moons' has only 20 training examples" in err


def test_a_global_batch_smaller_than_the_world_size_is_refused(monkeypatch, capsys, tmp_path):
    err = setup_error(monkeypatch, capsys, tmp_path, {**LAUNCH, "RANK": "0", "WORLD_SIZE": "4"},
                      "--set=batch_size=3")  # fmt: skip
    assert "batch_size=3 is the global batch, split across WORLD_SIZE=4 ranks" in err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("rank", [0, 1])
def test_a_missing_rendezvous_times_out_with_a_clear_error(monkeypatch, capsys, tmp_path, rank):
    """Rank 0 of 2 alone (it hosts the rendezvous; nobody comes), or rank 1 alone (nobody
    hosts it): both give up after --rendezvous-timeout and say what to check."""
    environment = {**LAUNCH, "MASTER_PORT": str(free_port()), "RANK": str(rank),
                   "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)}  # fmt: skip
    start = time.monotonic()
    err = setup_error(monkeypatch, capsys, tmp_path, environment, "--rendezvous-timeout", "2")
    assert time.monotonic() - start < 60
    assert f"rank {rank} of 2 could not meet the other ranks at 127.0.0.1:" in err
    assert "within 2 s" in err and "Are all 2 processes started" in err


def test_ranks_with_different_configs_refuse_to_train(tmp_path):
    """Two ranks started by hand (as torchrun would start them), one with another learning
    rate: both stop before writing anything and name the difference."""
    environment = {**clean_environment(), **LAUNCH, "MASTER_PORT": str(free_port()),
                   "WORLD_SIZE": "2"}  # fmt: skip
    config = str(ROOT / "configs" / "digits_ddp.yaml")
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlcourse.train",
                "--config",
                config,
                "--runs-dir",
                "runs",
                *SHORT,
                "--rendezvous-timeout",
                "120",
                *(["--set=optimizer.lr=0.1"] if rank else []),
            ],
            cwd=tmp_path,
            env={**environment, "RANK": str(rank), "LOCAL_RANK": str(rank)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for rank in (0, 1)
    ]
    results = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [EXIT_USAGE, EXIT_USAGE], results
    err = results[0][1]
    assert "the ranks did not plan the same runs" in err
    assert "optimizer.lr: 0.3 (rank 0) vs 0.1 (rank 1)" in err
    assert not (tmp_path / "runs").exists()


def test_one_rank_under_torchrun_is_the_plain_command(monkeypatch, tmp_path):
    config = str(ROOT / "configs" / "digits_ddp.yaml")
    base = ["--config", config, "--runs-dir", str(tmp_path), "--set=epochs=1", "--quiet"]
    assert main([*base, "--run-name", "plain"]) == EXIT_OK
    for name, value in {**LAUNCH, "RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(name, value)
    assert main([*base, "--run-name", "one-rank"]) == EXIT_OK
    summaries = [
        json.loads((tmp_path / n / "summary.json").read_text()) for n in ("plain", "one-rank")
    ]
    assert summaries[0]["weights_sha256"] == summaries[1]["weights_sha256"]


# --- the pieces ------------------------------------------------------------------------------


def test_shards_split_every_global_batch_without_overlap():
    batches = [[9, 4, 7, 1, 0], [3, 8, 2, 6, 5], [10]]
    shards = [list(ShardedBatchSampler(batches, rank=r, world_size=3)) for r in range(3)]
    for step, batch in enumerate(batches):
        pieces = [shards[r][step] for r in range(3)]
        assert sorted(i for piece in pieces for i in piece) == sorted(batch)
    assert shards[1] == [[4, 0], [8, 5], []]  # a short last batch leaves a rank empty
    assert check_shards([{"indices": [i for b in s for i in b]} for s in shards], 11) == []
    assert [global_batch_size(i, 5, 11) for i in range(3)] == [5, 5, 1]


def test_weighted_shard_losses_average_to_the_global_batch_gradient():
    """DDP averages the ranks' gradients; with uneven shards (10 and 9 examples) the plain
    per-rank mean would weigh the 9 more; the weight W / n_global makes it exact."""
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3).double()
    x, y = torch.randn(19, 5, dtype=torch.float64), torch.arange(19) % 3

    def gradient(loss):
        model.zero_grad()
        loss.backward()
        return model.weight.grad.clone()

    whole = gradient(torch.nn.functional.cross_entropy(model(x), y))
    weighted = (
        sum(
            gradient(
                torch.nn.functional.cross_entropy(model(x[r::2]), y[r::2], reduction="sum")
                * shard_loss_weight(19, 2)
            )  # fmt: skip
            for r in range(2)
        )
        / 2
    )
    naive = sum(gradient(torch.nn.functional.cross_entropy(model(x[r::2]), y[r::2]))
                for r in range(2)) / 2  # fmt: skip
    assert torch.allclose(weighted, whole, atol=1e-12, rtol=0)
    assert not torch.allclose(naive, whole, atol=1e-6, rtol=0)


def test_launch_and_backend_choices():
    assert launch_from_environment({"LOCAL_RANK": "0"}) is None
    launch = launch_from_environment({**LAUNCH, "RANK": "1", "WORLD_SIZE": "2"})
    assert launch == Launch(1, 2, 0, "127.0.0.1", 29555) and launch.is_data_parallel
    assert launch_from_environment({**LAUNCH, "RANK": "3", "WORLD_SIZE": "4",
                                    "LOCAL_RANK": ""}).local_rank == 3  # fmt: skip
    assert backend_for(torch.device("cpu")) == "gloo"
    assert backend_for(torch.device("cuda", 0)) == "nccl"  # device: auto picks CUDA first
    with pytest.raises(DistributedSetupError, match="no backend"):
        backend_for(torch.device("mps"))
    assert disagreements([{"run a": {"k": 1}}, {"run a": {"k": 1}}]) == []
    assert disagreements([{"run a": {"k": 1}}, {"run b": {"k": 1}}]) == [
        "rank 1 differs from rank 0: only rank 0 has run a",
        "rank 1 differs from rank 0: only rank 1 has run b",
    ]


def test_the_example_config_keeps_its_step_size_below_the_stability_limit():
    """configs/digits_ddp.yaml says lr is below 2/L for every global batch of 64 digits."""
    from mlcourse.datasets import digits_tensors

    config = yaml.safe_load((ROOT / "configs" / "digits_ddp.yaml").read_text())
    x = digits_tensors()["train"][0].double()
    ones = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)
    generator, worst = torch.Generator().manual_seed(0), 0.0
    for _ in range(300):  # random global batches; the bound is lambda_max(X^T X / n) / 2
        batch = ones[torch.randperm(len(x), generator=generator)[: config["batch_size"]]]
        worst = max(worst, float(torch.linalg.eigvalsh(batch.T @ batch / len(batch))[-1]) / 2)
    assert config["optimizer"]["lr"] < 2 / worst
