"""Where a resumed session continues, or why it cannot, and what to run instead.

The newest checkpoint is verified before a run continues. Damage is never passed over in
silence: :func:`resume_point` refuses it with :class:`ResumeRefused`, whose message names
the newest checkpoint that does verify and the exact ``--resume-from`` command that
continues from it. Continuing from an older checkpoint (a fallback) happens only when asked
for, and the :class:`ResumePoint` lists every checkpoint passed over and why.

Example:
    >>> ResumePoint(checkpoint=None).as_record(Path("runs/demo")) is None
    True
"""

from __future__ import annotations

import json
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlcourse.artifacts import Checkpoint, load_checkpoint, verify_checkpoint
from mlcourse.integrity import staging_label, stale_staging_dirs
from mlcourse.training.checkpoints import checkpoint_problem, checkpoint_step, run_checkpoints
from mlcourse.training.runs import RunPlan, show_path


class ResumeRefused(RuntimeError):
    """A run cannot be resumed (or re-verified) as it is; the message says what to do."""


@dataclass(frozen=True)
class ResumePoint:
    """Where a resumed run continues: a verified checkpoint (``None``: from step 0) and
    the newer checkpoints passed over, each with the reason."""

    checkpoint: Checkpoint | None
    skipped: tuple[tuple[Path, str], ...] = ()

    def as_record(self, root: Path) -> dict[str, Any] | None:
        """JSON-ready, with paths relative to the run folder ``root``."""
        if self.checkpoint is None:
            return None
        return {
            "checkpoint": self.checkpoint.path.relative_to(root).as_posix(),
            "step": self.checkpoint.metadata["metrics"]["step"],
            "skipped": [
                {"checkpoint": path.relative_to(root).as_posix(), "problem": problem}
                for path, problem in self.skipped
            ],
        }

    def describe(self) -> str:
        """The fallback, for the user: where it continues and what it passes over."""
        if self.checkpoint is None or not self.skipped:
            return ""
        step = self.checkpoint.metadata["metrics"]["step"]
        lines = [f"falling back to {show_path(self.checkpoint.path)} (step {step}), passing over:"]
        lines += [f"  {show_path(path)}: {problem}" for path, problem in self.skipped]
        return "\n".join(lines)


def resume_point(plan: RunPlan) -> ResumePoint:
    """The verified checkpoint a resumed run continues from; refuse on any damage."""
    folders = run_checkpoints(plan.paths.root)
    chosen = plan.resume_from
    if chosen is not None:
        problem = checkpoint_problem(chosen)
        if problem is not None:
            what = f"cannot resume run {plan.name!r} from {show_path(chosen)}: it is damaged: {problem}"
            raise ResumeRefused(_refusal(plan, what, [f for f in folders if f != chosen]))
        passed_over = "verified, but --resume-from chose an older one"
        skipped = tuple(
            (f, checkpoint_problem(f) or passed_over) for f in folders[: folders.index(chosen)]
        )
        return ResumePoint(load_checkpoint(chosen), skipped)
    if not folders:
        return ResumePoint(None)
    problem = checkpoint_problem(folders[0])
    if problem is not None:
        what = (
            f"cannot resume run {plan.name!r}: its newest checkpoint {show_path(folders[0])} "
            f"is damaged: {problem}"
        )
        raise ResumeRefused(_refusal(plan, what, folders[1:]))
    return ResumePoint(load_checkpoint(folders[0]))


def verify_finished(plan: RunPlan) -> dict[str, Any]:
    """Re-verify a finished run: its ``summary.json`` and the final checkpoint it names.

    Returns the summary; raises :class:`ResumeRefused` on any damage.
    """
    paths = plan.paths
    folders = run_checkpoints(paths.root)
    try:
        summary = json.loads(paths.summary.read_text(encoding="utf-8"))
        final, expected = paths.root / summary["checkpoint"], summary["weights_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        what = (
            f"run {plan.name!r} is finished, but its summary {show_path(paths.summary)} is "
            f"damaged ({type(error).__name__}: {error})."
        )
        raise ResumeRefused(_refusal(plan, what, folders)) from None
    if final not in folders:
        problem = f"summary.json names {summary['checkpoint']!r}, not one of the run's checkpoints."
    else:
        problem = checkpoint_problem(final)
        if problem is None and verify_checkpoint(final)["files"]["weights.pt"] != expected:
            problem = "its weights are not those summary.json records."
    if problem is not None:
        what = (
            f"run {plan.name!r} is finished, but its final checkpoint {show_path(final)} is "
            f"damaged: {problem}"
        )
        raise ResumeRefused(_refusal(plan, what, [f for f in folders if f != final]))
    return summary


def remove_stale_staging(plan: RunPlan) -> list[Path]:
    """Remove the staging folders killed processes left for this run (its run folder's
    and its checkpoints'); return them."""
    removed = plan.paths.store().remove_stale_staging()
    for folder in stale_staging_dirs(plan.paths.root.parent):
        if staging_label(folder) == plan.name:
            shutil.rmtree(folder)
            removed.append(folder)
    return removed


def _refusal(plan: RunPlan, what: str, candidates: Sequence[Path]) -> str:
    """``what`` went wrong, plus the newest verified checkpoint and the command to use it."""
    verified = next((f for f in candidates if checkpoint_problem(f) is None), None)
    if verified is None:
        return (
            f"{what}\nNo verified checkpoint is left (no verified checkpoint to resume from). "
            f"Start the run again under a new name:\n  {_command(plan, f'{plan.name}-2')}"
        )
    return (
        f"{what}\nThe newest verified checkpoint is {show_path(verified)} "
        f"(step {checkpoint_step(verified)}). To resume from it (the steps after it are "
        f"trained again):\n  {_command(plan, plan.name, verified)}"
    )


def _command(plan: RunPlan, run_name: str, resume_from: Path | None = None) -> str:
    """The command line that continues (or restarts) ``plan`` from its saved config."""
    argv = ["mlcourse-train", "--config", show_path(plan.paths.config)]
    argv += ["--runs-dir", show_path(plan.paths.root.parent), "--run-name", run_name]
    if resume_from is not None:
        argv += ["--resume-from", show_path(resume_from)]
    return shlex.join(argv)
