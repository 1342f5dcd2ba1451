"""The training command: train a lesson model from a config file, resumably.

::

    mlcourse-train --config configs/digits_mlp.yaml
    mlcourse-train --config configs/digits_mlp.yaml --set optimizer.lr=0.1 --run-name fast
    mlcourse-train --config configs/digits_mlp.yaml --sweep seed=0,1,2 --mlflow
    mlcourse-train --config configs/digits_mlp.yaml --resume     # after an interruption
    torchrun --nproc-per-node 2 -m mlcourse.train --config configs/digits_ddp.yaml

(``python -m mlcourse.train`` is the same command.) Under ``torchrun`` each process is one
rank of a data-parallel run (:mod:`mlcourse.training.distributed`): every rank checks the
command line on its own, then the ranks meet, check that they planned the same runs, and
train; rank 0 alone writes and prints. This module imports no numerical
library when it loads: :func:`main` first pins the numerics environment
(:func:`mlcourse.numerics.pin_this_process`), then imports torch through the rest of
:mod:`mlcourse.training`.

Exit codes: 0 done, 1 a run failed while training (or was refused on resume), 2 bad config
or command line (nothing written), 130 interrupted (resume with ``--resume``).

Example:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "tiny.yaml").write_text("name: tiny\\nepochs: 1\\nmodel: {hidden: []}\\n")
    >>> main(["--config", str(folder / "tiny.yaml"), "--runs-dir", str(folder / "runs"),
    ...       "--quiet"])  # doctest: +ELLIPSIS
    run 'tiny': val_accuracy=... test_accuracy=... (35 steps) -> .../runs/tiny
    0
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from mlcourse.config_fields import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def main(argv: list[str] | None = None, *, on_step: Callable[[int], None] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); return the exit code.

    ``on_step`` is called with the step number after every optimizer step (see
    :func:`mlcourse.training.loop.run_training`).
    """
    _pin_numerics()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed by argparse
        return int(exit_.code or 0)
    from mlcourse.training.distributed import launch_from_environment, leave
    from mlcourse.training.planning import plan_runs

    try:
        launch = launch_from_environment(os.environ)
        plans = plan_runs(args, argv, launch)
        if launch is not None and launch.is_data_parallel:
            _join_the_other_ranks(plans, launch, args.rendezvous_timeout)
    except ConfigError as error:
        print(f"mlcourse-train: error: {error}", file=sys.stderr)
        print("Nothing was written.", file=sys.stderr)
        leave()
        return EXIT_USAGE
    try:
        if args.dry_run:
            if launch is None or launch.is_main:
                _show_plans(plans)
            return EXIT_OK
        return _run_all(plans, args, on_step, launch)
    finally:
        leave()


def _join_the_other_ranks(plans: Sequence[Any], launch: Any, timeout_s: float) -> None:
    """Meet the other ranks (NCCL on CUDA, gloo on the CPU) and check that every rank
    planned the same runs; raise a ConfigError naming what differs."""
    from mlcourse.training.distributed import (
        DistributedSetupError,
        backend_for,
        disagreements,
        gather_to_all,
        join,
    )

    devices = sorted({plan.resources.device.type for plan in plans})
    if len(devices) > 1:
        raise DistributedSetupError(
            [f"the runs of this command use devices {devices}; a data-parallel command "
             "trains every run on one kind of device (set resources.device)."]
        )  # fmt: skip
    backend = backend_for(plans[0].resources.device)
    if backend == "nccl":
        import torch

        torch.cuda.set_device(plans[0].resources.device)
    join(launch, backend, timeout_s=timeout_s)
    described = {
        f"run {plan.name!r}": {
            **plan.config.flat(),
            "(mode)": plan.mode,
            "(hidden widths)": list(plan.widths),
            "(data)": json.dumps(plan.data.reference, sort_keys=True, default=str),
        }
        for plan in plans
    }
    problems = disagreements(gather_to_all(described))
    if problems:
        raise DistributedSetupError(
            ["the ranks did not plan the same runs (is the config file the same on every "
             "node, and the same command line?):", *problems]
        )  # fmt: skip


def _pin_numerics() -> None:
    """Pin CPU dispatch and threads before torch or NumPy load (a fresh command). When
    they are already loaded (``main`` called from a notebook or a test), the caller's
    environment stands; the run record's numerics fingerprint says what was used."""
    if "torch" in sys.modules or "numpy" in sys.modules:
        return
    from mlcourse.numerics import pin_this_process

    pin_this_process()


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of seconds > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    from mlcourse.training.distributed import RENDEZVOUS_TIMEOUT_S
    from mlcourse.training.runs import DEFAULT_RUNS_DIR

    parser = argparse.ArgumentParser(
        prog="mlcourse-train",
        description="Train a lesson model from a YAML/JSON config, resumably.",
        epilog="Example: mlcourse-train --config configs/digits_mlp.yaml --set optimizer.lr=0.1",
    )
    add = parser.add_argument
    add("--config", required=True, metavar="FILE", help="YAML or JSON config")
    add("--set", action="append", metavar="KEY=VALUE",
        help="override a setting, e.g. --set optimizer.lr=0.05 (repeatable)")  # fmt: skip
    add("--sweep", action="append", metavar="KEY=V1,V2",
        help="train every combination, e.g. --sweep seed=0,1,2 (repeatable)")  # fmt: skip
    add("--run-name", metavar="NAME",
        help="run folder name (default: the config's name + swept values)")  # fmt: skip
    add("--runs-dir", default=DEFAULT_RUNS_DIR, metavar="DIR",
        help="where run folders go (default: %(default)s)")  # fmt: skip
    add("--resume", action="store_true",
        help="continue existing runs from their newest checkpoint (verified first)")  # fmt: skip
    add("--resume-from", metavar="CHECKPOINT",
        help="continue one run from this checkpoint folder of it (e.g. when the newest "
        "is damaged)")  # fmt: skip
    add("--mlflow", action=argparse.BooleanOptionalAction, default=None,
        help="log to MLflow (same as --set tracking.mlflow=true)")  # fmt: skip
    add("--progress", action=argparse.BooleanOptionalAction, default=None,
        help="progress bar on stderr (default: when stderr is a terminal)")  # fmt: skip
    add("--rendezvous-timeout", type=_positive_seconds, default=RENDEZVOUS_TIMEOUT_S,
        metavar="SECONDS", help="under torchrun: how long each rank waits for the others "
        "to arrive (default: %(default)g)")  # fmt: skip
    add("--quiet", action="store_true", help="one line per run")
    add("--dry-run", action="store_true", help="check everything and show the plan; write nothing")
    return parser


def _show_plans(plans: Sequence[Any]) -> None:
    import yaml

    from mlcourse.training.runs import show_path

    for plan in plans:
        source = "model.hidden" if plan.config.model.hidden is not None else (
            f"resources.model_size={plan.resources.model_size!r}"
        )  # fmt: skip
        print(f"# run {plan.name!r} ({plan.mode}) -> {show_path(plan.paths.root)}")
        print(f"# hidden widths {list(plan.widths)} (from {source})")
        print(yaml.safe_dump(plan.config.to_dict(), sort_keys=False), end="")


def _run_all(
    plans: Sequence[Any],
    args: argparse.Namespace,
    on_step: Callable[[int], None] | None,
    launch: Any = None,
) -> int:
    """Train the planned runs one after the other. A single process reports a failed run
    and goes on with the others; the ranks of a data-parallel run stop at the first
    failure (a rank that went on alone would wait for the others forever)."""
    from mlcourse.training.loop import TrainingDiverged, run_training
    from mlcourse.training.resume import ResumeRefused
    from mlcourse.training.runs import show_path

    main_rank = launch is None or launch.is_main
    data_parallel = launch is not None and launch.is_data_parallel
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    runs_dir = Path(args.runs_dir)
    failed = 0
    with _caller_state_preserved():
        for plan in plans:
            try:
                run_training(plan, runs_dir=runs_dir, progress=progress, quiet=args.quiet,
                             on_step=on_step)  # fmt: skip
            except ResumeRefused as error:  # decided by rank 0, raised on every rank
                failed += 1
                if main_rank:
                    print(f"mlcourse-train: {error}", file=sys.stderr)
            except KeyboardInterrupt:
                if main_rank:
                    print(
                        f"\ninterrupted: run {plan.name!r} stopped; continue it with the same "
                        "command and --resume.",
                        file=sys.stderr,
                    )
                return EXIT_INTERRUPTED
            except Exception as error:  # report, then go on with the other runs
                failed += 1
                # a diverged loss is seen by every rank at once: rank 0 reports it
                if main_rank or not isinstance(error, TrainingDiverged):
                    where = "" if main_rank else f" on rank {launch.rank}"
                    print(
                        f"mlcourse-train: run {plan.name!r} failed{where}: "
                        f"{type(error).__name__}: {error}",
                        file=sys.stderr,
                    )
            if failed and data_parallel:
                return EXIT_FAILED
    if len(plans) > 1 and not args.quiet and main_rank:
        print(f"{len(plans) - failed} of {len(plans)} runs done in {show_path(runs_dir)}/")
    return EXIT_FAILED if failed else EXIT_OK


@contextlib.contextmanager
def _caller_state_preserved() -> Iterator[None]:
    """Leave the caller's random generators, determinism flag and thread count as they
    were (for in-process use from a notebook or a test)."""
    import torch

    from mlcourse.seeding import capture_rng_state, restore_rng_state

    rng = capture_rng_state()
    deterministic = torch.are_deterministic_algorithms_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        restore_rng_state(rng)
        if torch.are_deterministic_algorithms_enabled() != deterministic:
            torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


if __name__ == "__main__":
    raise SystemExit(main())
