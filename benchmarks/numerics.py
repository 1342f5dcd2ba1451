"""Do the CPU-dispatch pins make other CPUs give the same bits? Measure it, op by op.

    python benchmarks/numerics.py             # this CPU, and emulated CPUs if qemu is there
    python benchmarks/numerics.py --no-emulation

Runs a probe (matrix products of several shapes, a linear layer's forward and backward,
layer norm, softmax, reductions, exp/tanh/GELU, sqrt, a convolution, bf16 autocast,
attention, and 50 steps of Adam and of SGD with momentum on a small network) in fresh
processes with each kernel set: ``unpinned`` (each library picks its kernels), ``pinned``
(the course's pins for this CPU) and ``portable``. Each process prints a short hash of
every result. With Debian's ``qemu-user`` installed, the same runs are repeated on
emulated CPUs that lack AVX-512: ``Haswell`` (Intel, AVX2) and ``EPYC-Rome`` (AMD, AVX2).
(QEMU computes approximate instructions such as ``rsqrtps`` exactly, where real CPUs
differ from each other, so an emulated difference in ``sqrt`` is not evidence about real
hardware.)

Prints one Markdown table per kernel set: a column per CPU, a row per op, and whether all
CPUs agree; then what each kernel set costs on this CPU for a loop of the small matrix
products and linear layers the lessons are made of (CPU time, best of 5).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlcourse.notebooks import KERNEL_SETS  # noqa: E402
from mlcourse.numerics import UNPINNED, numerics_pins, with_overrides  # noqa: E402

EMULATED_CPUS = ("Haswell", "EPYC-Rome")
PROBE = r"""
import hashlib
import torch
import torch.nn.functional as F
torch.set_num_threads(1)
def h(t):
    return hashlib.sha256(t.detach().contiguous().float().numpy().tobytes()).hexdigest()[:10]
g = torch.Generator().manual_seed(0)
out = {}
a = torch.randn(512, 300, generator=g); b = torch.randn(300, 257, generator=g)
out["matmul 512x300x257"] = h(a @ b)
out["matmul 7x13x5"] = h(torch.randn(7, 13, generator=g) @ torch.randn(13, 5, generator=g))
out["batched matmul"] = h(torch.randn(4, 9, 16, generator=g) @ torch.randn(4, 16, 9, generator=g))
x = torch.randn(64, 100, generator=g, requires_grad=True)
torch.manual_seed(0)
lin = torch.nn.Linear(100, 37)
y = lin(x); y.square().sum().backward()
out["linear forward"] = h(y); out["linear weight grad"] = h(lin.weight.grad)
out["layer norm"] = h(F.layer_norm(a, (300,)))
out["softmax"] = h(torch.softmax(a, -1)); out["log-softmax"] = h(F.log_softmax(a, -1))
out["sum of 100k"] = h(torch.randn(100000, generator=g).sum()); out["mean over rows"] = h(a.mean(0))
out["exp, tanh, GELU"] = h(torch.exp(a[:10]) + torch.tanh(a[:10]) + F.gelu(a[:10]))
out["sqrt"] = h(a.abs().sqrt())
img = torch.randn(8, 3, 16, 16, generator=g); w = torch.randn(6, 3, 3, 3, generator=g)
out["conv2d"] = h(F.conv2d(img, w, padding=1))
with torch.autocast("cpu", dtype=torch.bfloat16):
    out["bf16 autocast linear"] = h(lin(x))
s = torch.randn(2, 10, 32, generator=g)
out["attention (SDPA)"] = h(F.scaled_dot_product_attention(s, s, s))
X = torch.randn(256, 64, generator=g); Y = torch.randint(0, 10, (256,), generator=g)
for name, make in (("Adam", lambda p: torch.optim.Adam(p, lr=1e-2)),
                   ("SGD momentum", lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9))):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    opt = make(net.parameters())
    for _ in range(50):
        opt.zero_grad(); F.cross_entropy(net(X), Y).backward(); opt.step()
    out[f"50 steps of {name}"] = h(torch.cat([p.flatten() for p in net.parameters()]))
print("capability\t" + torch.backends.cpu.get_cpu_capability())
for k, v in out.items():
    print(f"{k}\t{v}")
"""


COST = r"""
import time, torch
torch.set_num_threads(1)
a, b = torch.randn(64, 10, 32), torch.randn(32, 96)
c, d = torch.randn(64, 64), torch.randn(64, 64)
lin = torch.nn.Linear(64, 64)
x = torch.randn(128, 64, requires_grad=True)
best = float("inf")
for _ in range(5):
    start = time.process_time()
    for _ in range(3000):
        (a @ b).sum(); c @ d; lin(x).sum().backward()
    best = min(best, time.process_time() - start)
print(best)
"""


def run_cost(environment: dict[str, str]) -> float:
    """CPU seconds of the small-matrix loop (best of 5) in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", COST], capture_output=True, text=True, env=environment, check=True
    )
    return float(done.stdout.strip())


def run_probe(environment: dict[str, str], cpu: str | None) -> dict[str, str]:
    """Op -> hash, from a fresh process (under ``qemu-x86_64 -cpu cpu`` when given)."""
    command = [sys.executable, "-c", PROBE]
    if cpu:
        command = ["qemu-x86_64", "-cpu", cpu, *command]
    done = subprocess.run(
        command, capture_output=True, text=True, env=environment, check=True, timeout=1800
    )
    return dict(line.split("\t", 1) for line in done.stdout.strip().splitlines())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-emulation", action="store_true", help="this CPU only")
    args = parser.parse_args(argv)
    cpus: list[str | None] = [None]
    if not args.no_emulation and shutil.which("qemu-x86_64"):
        cpus += list(EMULATED_CPUS)
    elif not args.no_emulation:
        print("note: qemu-x86_64 not found (Debian: qemu-user); this CPU only\n", file=sys.stderr)
    sets = {"unpinned": UNPINNED, **KERNEL_SETS}
    base = {**os.environ, **numerics_pins()}
    for name, overrides in sets.items():
        environment = with_overrides(base, overrides)
        columns = {cpu or "this CPU": run_probe(environment, cpu) for cpu in cpus}
        print(f"\n### kernel set: {name}\n")
        print("| op | " + " | ".join(columns) + " | all agree |")
        print("|---|" + "---|" * len(columns) + "---|")
        ops = list(next(iter(columns.values())))
        for op in ops:
            values = [column.get(op, "?") for column in columns.values()]
            agree = "yes" if len(set(values)) == 1 else "**no**"
            print(f"| {op} | " + " | ".join(values) + f" | {agree} |")
    costs = {name: run_cost(with_overrides(base, o)) for name, o in sets.items()}
    print("\n### cost on this CPU: small matrix products and linear layers (CPU s, best of 5)\n")
    print("| kernel set | CPU seconds | vs pinned |\n|---|---:|---:|")
    for name, seconds in costs.items():
        print(f"| {name} | {seconds:.3f} | {seconds / costs['pinned'] - 1:+.0%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
