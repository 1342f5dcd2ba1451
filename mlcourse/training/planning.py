"""From a command line to checked runs: everything that can fail is checked before any
run starts, and every problem is reported at once.

Example:
    >>> import argparse, pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "c.yaml").write_text("name: c\\nmodel: {hidden: [8]}\\n")
    >>> args = argparse.Namespace(config=str(folder / "c.yaml"), set=["epochs=2"], sweep=None,
    ...     mlflow=None, run_name=None, runs_dir=str(folder / "runs"), resume=False,
    ...     resume_from=None)
    >>> [(p.name, p.mode, p.widths, p.config.epochs) for p in plan_runs(args, [])]
    [('c', 'start', (8,), 2)]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from mlcourse.config_fields import NAME_PATTERN, ConfigError
from mlcourse.config_files import ConfigFileError, load_config_file
from mlcourse.resources import ResourceUnavailableError, resolve
from mlcourse.training.checkpoints import run_checkpoints
from mlcourse.training.config import DataConfig, TrainConfig
from mlcourse.training.data import DataSplits, load_data
from mlcourse.training.distributed import (
    DistributedSetupError,
    Launch,
    backend_for,
    rank_resources,
)
from mlcourse.training.model import model_widths
from mlcourse.training.overrides import apply_overrides, expand_sweep, flatten, read_config_file
from mlcourse.training.runs import RunPaths, RunPlan, show_path


def plan_runs(
    args: argparse.Namespace, argv: Sequence[str], launch: Launch | None = None
) -> list[RunPlan]:
    """Check the command line into a list of runs; raise :class:`ConfigError` if any is bad.

    ``launch``: this process's place among the ranks of a data-parallel run (from
    :func:`mlcourse.training.distributed.launch_from_environment`), or ``None``.
    """
    source = str(args.config)
    configs = _configs(args)
    if args.resume_from is not None and len(configs) > 1:
        message = f"--resume-from resumes one run, but this command makes {len(configs)} runs."
        raise ConfigError([message], source=source, what="training config")
    problems: list[str] = []
    plans: list[RunPlan] = []
    loaded: dict[DataConfig, DataSplits] = {}

    def data_for(config: DataConfig) -> DataSplits:  # runs that share data load it once
        if config not in loaded:
            loaded[config] = load_data(config)
        return loaded[config]

    for suffix, config in configs:
        name = (args.run_name or config.name) + suffix
        plan = _plan_one(args, argv, name, config, data_for, problems, launch)
        if plan is None:
            continue
        n_train = plan.data.reference["sizes"]["train"]
        if config.batch_size > n_train:
            problems.append(
                f"batch_size={config.batch_size} is larger than the {n_train} "
                f"training examples of {plan.data.reference['name']!r}."
            )
        problems += _data_parallel_problems(plan, n_train)
        plans.append(plan)
    names = [p.name for p in plans]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        problems.append(f"several runs would be named {duplicates}; sweep keys must differ.")
    if problems:
        raise ConfigError(problems, source=source, what="training config")
    return plans


def _configs(args: argparse.Namespace) -> list[tuple[str, TrainConfig]]:
    """The checked config of every run the command asks for, with its run-name suffix."""
    raw = read_config_file(args.config)
    overrides = list(args.set or [])
    if args.mlflow is not None:
        overrides.append(f"tracking.mlflow={'true' if args.mlflow else 'false'}")
    raw = apply_overrides(raw, overrides)
    variants = expand_sweep(raw, args.sweep) if args.sweep else [("", raw)]
    return [(suffix, TrainConfig.from_dict(v, source=str(args.config))) for suffix, v in variants]


def _plan_one(
    args: argparse.Namespace,
    argv: Sequence[str],
    name: str,
    config: TrainConfig,
    data_for: Callable[[DataConfig], DataSplits],
    problems: list[str],
    launch: Launch | None = None,
) -> RunPlan | None:
    """The plan of one run, or ``None`` after adding to ``problems`` why it cannot run."""
    if not NAME_PATTERN.match(name):
        problems.append(
            f"run name {name!r} is not valid; use 1-100 letters, digits, '.', "
            "'_' or '-', starting with a letter or digit."
        )
        return None
    try:
        resources = resolve(config.resources)
    except ResourceUnavailableError as error:
        problems.append(f"{name}: {error}")
        return None
    if launch is not None and launch.is_data_parallel:
        try:
            backend_for(resources.device)
            resources = rank_resources(resources, launch)
        except DistributedSetupError as error:
            problems += [f"{name}: {p}" for p in error.problems]
            return None
    paths = RunPaths(Path(args.runs_dir) / name)
    widths = model_widths(config.model, resources)
    mode, chosen = "start", None
    if args.resume_from is not None:
        chosen = _chosen_checkpoint(paths, Path(args.resume_from))
        if chosen is None:
            problems.append(
                f"--resume-from {args.resume_from!r} is not a checkpoint of run {name!r}; "
                f"its checkpoints are the folders under {show_path(paths.checkpoints)}/."
            )
            return None
    if paths.root.exists():
        if not (args.resume or chosen):
            problems.append(
                f"run directory {show_path(paths.root)!r} already exists and runs are never "
                "overwritten; pass --resume to continue it, or --run-name to start a new run."
            )
            return None
        mode = "done" if paths.summary.exists() and chosen is None else "resume"
        problems += _compare_saved_run(paths, config, widths, launch)
    data = data_for(config.data)
    return RunPlan(name, paths, config, resources, data, widths, mode, list(argv), chosen, launch)


def _data_parallel_problems(plan: RunPlan, n_train: int) -> list[str]:
    """Why ``plan`` cannot be split across its ranks: every rank needs examples."""
    ranks = plan.world_size
    if ranks == 1:
        return []
    problems = []
    if ranks > n_train:
        problems.append(
            f"{plan.name}: WORLD_SIZE={ranks} ranks, but {plan.data.reference['name']!r} has "
            f"only {n_train} training examples: each rank needs at least one. Start at most "
            f"{n_train} processes (torchrun --nproc-per-node)."
        )
    elif plan.config.batch_size < ranks:
        problems.append(
            f"{plan.name}: batch_size={plan.config.batch_size} is the global batch, split "
            f"across WORLD_SIZE={ranks} ranks, so some ranks would get no example at all; use "
            f"batch_size >= {ranks}, or fewer processes."
        )
    return problems


def _chosen_checkpoint(paths: RunPaths, given: Path) -> Path | None:
    """The checkpoint folder of the run that ``--resume-from`` names, or ``None``."""
    if not given.is_dir():
        return None
    wanted = given.resolve()
    return next((f for f in run_checkpoints(paths.root) if f.resolve() == wanted), None)


def _compare_saved_run(
    paths: RunPaths, config: TrainConfig, widths: tuple[int, ...], launch: Launch | None = None
) -> list[str]:
    """Problems resuming a run with ``config``: a changed config, another model size, or
    another number of ranks."""
    where = show_path(paths.root)
    if not paths.config.exists():
        return [f"{where!r} is not a run directory (no config.yaml); not touching it."]
    try:
        saved = flatten(load_config_file(paths.config))
        recorded = load_config_file(paths.record)
    except ConfigFileError as error:
        return [f"cannot resume {where!r}: {error}"]
    now = config.flat()
    changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed)
        return [
            f"cannot resume {where!r} with a different config ({details}); "
            "resume with the original settings, or start a new run with --run-name."
        ]
    started_with = ((recorded.get("run") or {}).get("model") or {}).get("hidden")
    if started_with is not None and tuple(started_with) != widths:
        return [
            f"cannot resume {where!r}: it was started with hidden widths {started_with}, "
            f"but resources.model_size={config.resources.model_size!r} picks "
            f"{list(widths)} on this machine; resume it where it started."
        ]
    started_ranks = int((recorded.get("distributed") or {}).get("world_size", 1))
    ranks = 1 if launch is None else launch.world_size
    if started_ranks != ranks:
        how = (
            "as one process (mlcourse-train ... --resume)"
            if started_ranks == 1
            else f"on {started_ranks} ranks (torchrun --nproc-per-node {started_ranks} "
            "-m mlcourse.train ... --resume)"
        )
        return [
            f"cannot resume {where!r} on {ranks} rank(s): it was started on {started_ranks}, "
            f"and its checkpoints hold the random number generators of each of them; resume "
            f"it {how}."
        ]
    return []
