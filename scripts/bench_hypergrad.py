"""Cost of exact forward-mode hypergradients: time per inner step and peak memory in the horizon.

Part 1 times one training step carrying tangents for K = 1, 3, 7, 15 hyperparameter entries
(K learning-rate windows), looped over entries and batched with vmap, eager and through
``torch.compile`` (its one-off compilation is the "first call" column, not in the per-step time),
relative to a plain ``torch.optim.SGD`` step on the same model and batch (Ray Tune has no
hypergradient code to compare with; the plain step is the baseline every trainable pays anyway);
then the other hyperparameter kinds (AdamW's lr, beta1 and weight decay; label smoothing and
per-layer L2 in the loss), each against a plain ``torch.optim`` step of the same kind.
Part 2 measures peak resident memory of a whole differentiated run at horizons of 100, 1,000 and
10,000 steps, forward (eager and compiled) against reverse mode, each in a fresh subprocess
(``ru_maxrss`` after the run minus ``ru_maxrss`` after setup and a 10-step warm-up). Reverse mode
keeps the whole unrolled run in memory (about 0.28 MiB per step here, 2.7 GiB at 10,000 steps);
``--reverse-max`` caps it on a smaller machine.

Part 3 (``--modes``) is the table of docs/gradient-hpo.md: one FDS outer step (a whole inner run
with its hypergradients) on a benchmark task's model, data, batch size and horizon (mnist1d: the
1D CNN, 20 epochs), as a multiple of a plain ``torch.optim.SGD`` run of the same batches timed in
the same process, for every mode (forward, reverse, checkpointed, auto) at 5, 30, 100 and
per-step entries, with each cell's peak RSS (``ru_maxrss`` of a fresh subprocess that holds only
that cell) next to the peak of a process that only runs the plain run. Forward mode's cost grows
with the entries: cells above ``--forward-max`` entries are not run, and their estimate (a line
through the measured forward cells) is printed as such. ``--mode-list reverse reverse-aten`` adds
reverse mode with ATen's own convolution double backward (``tune_ext/hypergrad/convolution.py``
off) next to the default, to time what the masked one saves.

    PYTHONPATH=. python scripts/bench_hypergrad.py            # parts 1 and 2, minutes on a CPU
    PYTHONPATH=. python scripts/bench_hypergrad.py --modes    # part 3: mnist1d, 20 epochs
    PYTHONPATH=. python scripts/bench_hypergrad.py --modes --epochs 4 --sizes 5 30  # smaller
    PYTHONPATH=. python scripts/bench_hypergrad.py --modes --mode-list reverse reverse-aten
    PYTHONPATH=. python scripts/bench_hypergrad.py --fds-step mnist1d   # FDS outer step vs a plain run
    PYTHONPATH=. python scripts/bench_hypergrad.py --quick    # smaller, for a smoke test
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import resource
import subprocess
import sys
import time

import torch

HIDDEN = [128]
BATCH = [64]


def setup(seed=0):
    from trainables import build_model, load_dataset

    data = load_dataset("digits")
    torch.manual_seed(seed)
    model = build_model("mlp", data.input_shape, data.num_classes, hidden=tuple(HIDDEN))

    def batches(n):
        return LazyBatches(data.x_train, data.y_train, n, seed)

    return model, batches, (data.x_val, data.y_val)


class LazyBatches:
    """n random minibatches drawn on demand, so a 10,000-step horizon holds no data in memory."""

    def __init__(self, x, y, n, seed):
        self.x, self.y, self.n, self.seed = x, y, n, seed

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if not 0 <= i < self.n:
            raise IndexError(i)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        idx = torch.randint(0, len(self.y), (BATCH[0],), generator=g)
        return self.x[idx], self.y[idx]


def best_time(fn, reps, repeats=5):
    """Smallest mean over ``repeats`` blocks of ``reps`` calls: robust to a busy machine."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t) / reps)
    return best


def first_call(fn):
    """Seconds of one call (for a compiled function: the compilation)."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def time_steps(entries, reps, compiled):
    from tune_ext.hypergrad.engine import Trainer, as_hparams

    model, batches, _ = setup()
    batch = batches(1)[0]
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)

    def plain():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(batch[0]), batch[1]).backward()
        opt.step()

    t_plain = best_time(plain, reps)
    trainer = Trainer(model, torch.nn.functional.cross_entropy)
    s0 = trainer.start(1)
    hp0 = {"momentum": torch.tensor([0.9]), "weight_decay": torch.tensor([1e-4])}
    hp1 = {n: h[0] for n, h in as_hparams({"lr": torch.full((1,), 0.01), **hp0}, next(model.parameters())).items()}
    functional = lambda: trainer.step(s0.weights, s0.velocity, s0.buffers, hp1, batch)
    with torch.no_grad():
        rows = [("plain torch.optim.SGD step", 0, t_plain, None),
                ("functional step, no tangents", 0, best_time(functional, reps), None)]
        if compiled:  # what compilation alone buys a step that carries no tangents
            step_c = torch.compile(functional, fullgraph=True, dynamic=False)
            first = first_call(step_c)
            rows.append(("functional step, no tangents, compiled", 0, best_time(step_c, reps), first))
    variants = [(False, False), (True, False)] + ([(False, True), (True, True)] if compiled else [])
    for k in entries:
        # k entries: k learning-rate windows (momentum and weight decay are fixed values here)
        hp = as_hparams({"lr": torch.full((k,), 0.01)}, next(model.parameters()))
        fixed = {"momentum": torch.tensor(0.9), "weight_decay": torch.tensor(1e-4)}
        for batched, compile in variants:
            trainer = Trainer(model, torch.nn.functional.cross_entropy, _with_fixed(fixed), batched, compile)
            start = trainer.start(k)

            def step():
                # the same starting point every call, at step t cycling through the k windows
                start.step = (start.step + 1) % k
                trainer.tangent_step(start, batch, hparams=hp, total=k)

            name = ("vmap-batched" if batched else "looped") + (", compiled" if compile else "")
            with torch.no_grad():
                first = first_call(step)  # compiles when compiled
                rows.append((name, k, best_time(step, max(2, reps // k)), first if compile else None))
    return rows, t_plain


def _with_fixed(fixed):
    from tune_ext.hypergrad.updates import sgd_momentum

    return lambda w, v, g, hp: sgd_momentum(w, v, g, {**fixed, **hp})


def time_kinds(reps, compiled):
    """Hyperparameters beyond SGD's: each kind's differentiated step against a plain torch step of
    the same kind (AdamW against ``torch.optim.AdamW``; the regularised loss against SGD on the
    same loss written with torch's ``label_smoothing`` and an explicit L2 term)."""
    from tune_ext.hypergrad import SGD, AdamW, Trainer, layers_of, regularised_cross_entropy
    from tune_ext.hypergrad.engine import as_hparams

    model, batches, _ = setup()
    batch = batches(1)[0]
    like = next(model.parameters())
    layer_of = layers_of(model)
    groups = [[p for n, p in model.named_parameters() if layer_of[n] == i] for i in sorted(set(layer_of.values()))]
    ce = torch.nn.functional.cross_entropy
    adamw = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.999), weight_decay=1e-2)
    sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def plain_adamw():
        adamw.zero_grad(set_to_none=True)
        ce(model(batch[0]), batch[1]).backward()
        adamw.step()

    def plain_loss():
        sgd.zero_grad(set_to_none=True)
        loss = ce(model(batch[0]), batch[1], label_smoothing=0.1)
        (loss + sum(1e-4 / 2 * sum((p * p).sum() for p in g) for g in groups)).backward()
        sgd.step()

    kinds = [
        ("AdamW: lr, beta1, weight decay", plain_adamw, AdamW(), None,
         {"lr": [1e-3], "beta1": [0.9], "weight_decay": [1e-2]}),
        ("loss: label smoothing + per-layer L2", plain_loss, SGD(layer_of),
         regularised_cross_entropy(layer_of),
         {"lr": [0.01], "momentum": [0.9], "label_smoothing": [0.1], "l2": [[1e-4] * len(groups)]}),
    ]
    rows = []
    for name, plain, update, train_loss, values in kinds:
        t_plain = best_time(plain, reps)
        hp = as_hparams({n: torch.tensor(v) for n, v in values.items()}, like)
        k = sum(h.numel() for h in hp.values())
        rows.append((f"{name}: plain torch.optim step", 0, t_plain, None, t_plain))
        for compile in (False, True) if compiled else (False,):
            trainer = Trainer(model, ce, update, True, compile, train_loss)
            start = trainer.start(k)
            step = lambda: trainer.tangent_step(start, batch, hparams=hp, total=1)  # noqa: E731
            with torch.no_grad():
                first = first_call(step)
                rows.append((f"{name}: vmap-batched" + (", compiled" if compile else ""), k,
                             best_time(step, max(2, reps // k)), first if compile else None, t_plain))
    return rows


def memory_child(mode, steps):
    """Runs in a fresh interpreter: prints the peak-RSS growth (MiB) of one differentiated run."""
    from tune_ext.hypergrad import forward_run, reverse_run

    model, batches, val = setup()
    hp = {"lr": torch.full((1,), 0.05), "momentum": torch.tensor([0.9]), "weight_decay": torch.tensor([1e-4])}
    if mode == "reverse":
        run = reverse_run
    else:
        run = functools.partial(forward_run, compile=mode == "forward, compiled")
    run(model, torch.nn.functional.cross_entropy, batches(10), val, hp)  # warm-up: caches, allocator
    train = batches(steps)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    out = run(model, torch.nn.functional.cross_entropy, train, val, hp)
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert all(torch.isfinite(g).all() for g in out.hypergrads.values())
    print(json.dumps({"base_mib": base / 1024, "peak_mib": peak / 1024,
                      "delta_mib": (peak - base) / 1024, "seconds": seconds}))


def measure_memory(mode, steps, threads):
    cmd = [sys.executable, __file__, "--child", mode, str(steps), "--threads", str(threads),
           "--hidden", *map(str, HIDDEN), "--batch", str(BATCH[0])]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- part 3: every mode over a task's horizon ------------------------------------------------------

SIZES = {"5": "3 lr windows, momentum, weight decay (the task's default space)",
         "30": "10 windows each of lr, momentum, weight decay",
         "100": "per-layer lr and weight decay over 15 windows, momentum over 10 windows",
         "step": "one lr, momentum and weight decay per training step"}
MODE_ROWS = ("plain", "forward", "reverse", "checkpointed", "auto")
# on request only: reverse mode with ATen's own convolution double backward (hypergrad/convolution.py)
ATEN = "reverse-aten"


def horizon_setup(dataset, model_name, batch_size, epochs, seed=0):
    """The task's data, a seeded model and an FDS inner run's batches (epochs of permutations)."""
    from trainables import build_model, load_dataset

    data = load_dataset(dataset)
    torch.manual_seed(seed)
    model = build_model(model_name, data.input_shape, data.num_classes)
    g = torch.Generator().manual_seed(seed)
    n = len(data.y_train)
    batches = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        batches += [(data.x_train[order[i:i + batch_size]], data.y_train[order[i:i + batch_size]])
                    for i in range(0, n, batch_size)]
    return model, batches, (data.x_val, data.y_val)


def size_hparams(size, model, total):
    """(hparams, update) for one row of SIZES, starting from a common schedule."""
    from tune_ext.hypergrad import SGD, layers_of

    full = lambda n, v: torch.full((n,), v)  # noqa: E731
    if size == "5":
        return {"lr": full(3, 0.05), "momentum": full(1, 0.9), "weight_decay": full(1, 5e-4)}, SGD()
    if size == "30":
        return {"lr": full(10, 0.05), "momentum": full(10, 0.9), "weight_decay": full(10, 5e-4)}, SGD()
    if size == "100":
        layer_of = layers_of(model)
        n = len(set(layer_of.values()))
        return ({"lr": torch.full((15, n), 0.05), "momentum": full(10, 0.9),
                 "weight_decay": torch.full((15, n), 5e-4)}, SGD(layer_of))
    return {"lr": full(total, 0.05), "momentum": full(total, 0.9), "weight_decay": full(total, 5e-4)}, SGD()


def plain_run(model, batches):
    """The baseline: torch.optim.SGD over the same batches from the same weights."""
    import copy

    m = copy.deepcopy(model)
    opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    ce = torch.nn.functional.cross_entropy
    m.train()
    for x, y in batches:
        opt.zero_grad(set_to_none=True)
        ce(m(x), y).backward()
        opt.step()


def modes_child(task_json, mode, size, repeats, compile=False):
    """Runs in a fresh interpreter: one cell, printed as JSON (times in s, peak RSS in MiB)."""
    from tune_ext.hypergrad import convolution, inner_run
    from tune_ext.hypergrad.choice import default_memory_budget, estimates
    from tune_ext.hypergrad.reverse import default_segment, step_graph_bytes

    if mode == ATEN:
        convolution.ENABLED, mode = False, "reverse"
    t = json.loads(task_json)
    model, batches, val = horizon_setup(t["dataset"], t["model"], t["batch_size"], t["epochs"])
    hp, update = size_hparams(size, model, len(batches))
    ce = torch.nn.functional.cross_entropy
    warm = batches[:max(2, len(batches) // t["epochs"])]  # one epoch: imports, caches, allocator
    plain_run(model, warm)
    out = {"entries": sum(h.numel() for h in hp.values()), "steps": len(batches)}
    run = lambda b: inner_run(model, ce, b, val, hp if b is batches else  # noqa: E731
                              {n: h[:1] for n, h in hp.items()}, mode=mode, update=update,
                              compile=compile)
    if mode != "plain":
        run(warm)  # compiled: both batch shapes (the epoch's short last batch) compile here
    plains, times, used = [], [], None
    for _ in range(repeats):  # interleaved: the load of the moment falls on both
        start = time.perf_counter()
        plain_run(model, batches)
        plains.append(time.perf_counter() - start)
        if mode != "plain":
            start = time.perf_counter()
            result = run(batches)
            times.append(time.perf_counter() - start)
            used = result.mode
            assert all(torch.isfinite(g).all() for g in result.hypergrads.values())
    step_bytes, state_bytes = step_graph_bytes(model, ce, batches[0], hp, update=update)
    memory, _, _ = estimates(out["entries"], len(batches), step_bytes, state_bytes)
    out.update(plain_s=min(plains), seconds=min(times) if times else None, used=used,
               peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
               stored_mib=math.ceil(len(batches) / default_segment(len(batches))) * state_bytes / 2**20,
               estimate_mib={k: v / 2**20 for k, v in memory.items()},
               budget_mib=default_memory_budget() / 2**20)
    print(json.dumps(out))


def modes_table(args):
    """Part 3: the table of docs/gradient-hpo.md."""
    from tune_ext.benchmark.tasks import get_task

    task = get_task(args.task)
    space = task.space
    spec = {"dataset": space["dataset"], "model": space["model"], "batch_size": space["batch_size"],
            "epochs": args.epochs or task.max_t}
    load = os.getloadavg()
    print(f"{task.name}: model {spec['model']}, batch {spec['batch_size']}, {spec['epochs']} epochs, "
          f"float32, {args.threads} torch thread(s), torch {torch.__version__}, best of "
          f"{args.repeats}{', compiled (compilation in the warm-up, not timed)' if args.compile else ''}; "
          f"load average at start {load[0]:.2f} on {os.cpu_count()} cores\n")

    def cell(mode, size):
        cmd = [sys.executable, __file__, "--modes-child", json.dumps(spec), mode, size,
               str(args.repeats), "--threads", str(args.threads)] + (["--compile"] if args.compile else [])
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            raise RuntimeError(f"cell {mode}/{size} failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    plain = cell("plain", args.sizes[0])
    print(f"plain torch.optim.SGD run: {plain['plain_s']:.2f} s, peak RSS {plain['peak_mib']:.0f} MiB "
          f"({plain['steps']} steps)\n")
    print("| entries | mode | path taken | one outer step / plain run | peak RSS (MiB) | "
          "peak / plain run's | stored states (MiB) | auto's estimate of the path (MiB) |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    forward = {}
    for size in args.sizes:
        for mode in MODE_ROWS[1:] + (ATEN,):
            if mode not in args.mode_list:
                continue
            if mode == "forward" and size != "step" and int(size) > args.forward_max or \
                    mode == "forward" and size == "step":
                est = _forward_estimate(forward, size, plain)
                print(f"| {size} | forward | - | not run (estimated {est}) | | | | |")
                continue
            r = cell(mode, size)
            ratio = r["seconds"] / r["plain_s"]
            if mode == "forward":
                forward[r["entries"]] = ratio
            stored = f"{r['stored_mib']:.2f}" if mode == "checkpointed" else ""
            print(f"| {r['entries']} | {mode} | {r['used']} | {ratio:.2f}x | {r['peak_mib']:.0f} | "
                  f"{r['peak_mib'] / plain['peak_mib']:.2f} | {stored} | "
                  f"{r['estimate_mib'][r['used']]:.0f} |", flush=True)
    print("\nsizes: " + "; ".join(f"{k}: {SIZES[k]}" for k in args.sizes))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")


def _forward_estimate(forward: dict, size: str, plain: dict) -> str:
    """Forward mode's multiple at a size not run: a line through the measured sizes."""
    if not forward:
        return "no forward cell measured to extrapolate from"
    entries = {"5": 5, "30": 30, "100": 100}.get(size, 3 * plain["steps"])
    ks = sorted(forward)
    if len(ks) == 1:
        from tune_ext.hypergrad.choice import forward_cost

        x = forward[ks[0]] * forward_cost(entries) / forward_cost(ks[0])
        how = f"from {ks[0]} entries and choice.forward_cost"
    else:
        (k0, k1) = ks[0], ks[-1]
        slope = (forward[k1] - forward[k0]) / (k1 - k0)
        x = forward[k1] + slope * (entries - k1)
        how = f"a line through {k0} and {k1} entries"
    return f"{x:.0f}x at {entries} entries, {how}"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repetitions and horizons")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared CPU)")
    p.add_argument("--reverse-max", type=int, default=10000, help="longest horizon run in reverse mode")
    p.add_argument("--hidden", type=int, nargs="+", default=HIDDEN, help="MLP hidden widths")
    p.add_argument("--batch", type=int, default=BATCH[0], help="minibatch size")
    p.add_argument("--skip-memory", action="store_true", help="time steps only")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--modes", action="store_true",
                   help="instead: part 3, every hypergradient mode over a task's horizon")
    p.add_argument("--task", default="mnist1d", help="--modes: the benchmark task")
    p.add_argument("--epochs", type=int, default=None, help="--modes: horizon [the task's]")
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES),
                   help="--modes: entry counts (step: one lr, momentum, weight decay per step)")
    p.add_argument("--mode-list", nargs="+", default=list(MODE_ROWS[1:]), choices=MODE_ROWS[1:] + (ATEN,),
                   help="--modes: which modes")
    p.add_argument("--forward-max", type=int, default=30,
                   help="--modes: run forward mode up to this many entries (estimate above)")
    p.add_argument("--repeats", type=int, default=1, help="--modes: timed runs per cell (best)")
    p.add_argument("--compile", action="store_true",
                   help="--modes: torch.compile every mode's differentiated step")
    p.add_argument("--modes-child", nargs=4, help=argparse.SUPPRESS)
    p.add_argument("--fds-step", metavar="TASK",
                   help="instead: one FDS outer step on a benchmark task's model against one plain "
                        "training run, eager and compiled (scripts/fds_step_cost.py)")
    args = p.parse_args()
    if args.fds_step:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from fds_step_cost import measure
        return measure(args.fds_step)
    HIDDEN[:] = args.hidden
    BATCH[0] = args.batch
    torch.set_num_threads(args.threads)
    if args.child:
        return memory_child(args.child[0], int(args.child[1]))
    if args.modes_child:
        spec, mode, size, repeats = args.modes_child
        return modes_child(spec, mode, size, int(repeats), args.compile)
    if args.modes:
        return modes_table(args)

    entries = (1, 3) if args.quick else (1, 3, 7, 15)
    horizons = (100, 1000) if args.quick else (100, 1000, 10000)
    widths = "-".join(map(str, [64, *HIDDEN, 10]))
    print(f"model: MLP {widths} on digits, batch {BATCH[0]}, float32, {args.threads} torch thread(s), "
          f"torch {torch.__version__}\n")
    rows, t_plain = time_steps(entries, reps=10 if args.quick else 40, compiled=not args.no_compile)
    print("| step | entries K | ms / step | x plain step | x plain per entry | first call (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, k, t, first in rows:
        per = f"{t / t_plain / k:.2f}" if k else "-"
        print(f"| {name} | {k or '-'} | {1e3 * t:.3f} | {t / t_plain:.2f} | {per} | "
              f"{'-' if first is None else f'{first:.1f}'} |")
    print("\nOther hyperparameter kinds (x plain: against the plain step of the same kind):\n")
    print("| step | entries K | ms / step | x plain step | x plain per entry | first call (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, k, t, first, base in time_kinds(reps=10 if args.quick else 40, compiled=not args.no_compile):
        per = f"{t / base / k:.2f}" if k else "-"
        print(f"| {name} | {k or '-'} | {1e3 * t:.3f} | {t / base:.2f} | {per} | "
              f"{'-' if first is None else f'{first:.1f}'} |")
    if args.skip_memory:
        return

    print("\n| mode | horizon (steps) | peak RSS (MiB) | growth over warm-up (MiB) | run time (s) |")
    print("|---|---:|---:|---:|---:|")
    results = {}
    modes = ("forward", "reverse") if args.no_compile else ("forward", "forward, compiled", "reverse")
    for mode in modes:
        for steps in horizons:
            if mode == "reverse" and steps > args.reverse_max:
                print(f"| {mode} | {steps} | not run (capped at --reverse-max {args.reverse_max}) | | |")
                continue
            r = measure_memory(mode, steps, args.threads)
            results[(mode, steps)] = r
            print(f"| {mode} | {steps} | {r['peak_mib']:.1f} | {r['delta_mib']:.1f} | {r['seconds']:.1f} |")
    for mode in modes[:-1]:
        fwd = [results[(mode, s)]["peak_mib"] for s in horizons]
        print(f"\n{mode} peak RSS, longest vs shortest horizon: {100 * (fwd[-1] / fwd[0] - 1):+.1f}% "
              f"(target: within 5%)")


if __name__ == "__main__":
    main()
