"""Capacity planning for the served models: how many replicas of what size each model needs, and
on which nodes they go.

1. Sizing, a mixed-integer linear program (scipy's milp; its LP relaxation, by linprog, is the
   lower bound it is reported against). For model m and replica size s (CPUs), x[m,s] replicas
   and y[m,s] in {0, 1} choosing one size per model:

       minimise    sum c_s x[m,s]                                   (CPUs reserved)
       subject to  sum_s thr[m,s] x[m,s] >= rate_m / utilisation   (each target rate met with headroom)
                   sum c_s x[m,s] <= capacity                       (the cluster's CPUs)
                   x[m,s] <= M y[m,s],  sum_s y[m,s] = 1,  x[m,s] >= y[m,s]
                   y[m,s] = 0 where the size's latency exceeds the model's bound

2. Placement, a quadratic program: a[m,n] replicas of model m on node n (relaxed to reals, then
   rounded by largest remainders), minimising the sum of squared node loads sum_n L_n^2 with
   L_n = sum_m c_m a[m,n], subject to sum_n a[m,n] = x_m and L_n <= CPUs of node n. Squares
   penalise a heavy node more than they reward a light one, so the optimum spreads the load.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Option:
    """One replica size of a model, as measured: requests/s one replica serves, and the latency of one batch."""
    cpus: float
    throughput: float  # requests/s per replica
    latency_s: float


@dataclass
class Demand:
    model: str
    rate: float  # target requests/s
    options: list[Option]
    max_latency_s: float | None = None


@dataclass
class Sizing:
    model: str
    cpus: float  # per replica
    replicas: int  # at the target rate
    max_replicas: int  # at the peak rate, within what the cluster has left
    throughput: float  # requests/s of the replicas at the target
    latency_s: float


@dataclass
class Plan:
    sizing: list[Sizing]
    cpus: float  # reserved at the target rates
    lp_bound: float  # the LP relaxation's optimum: no integer plan reserves fewer CPUs
    capacity: float
    placement: dict[str, dict[str, int]] = field(default_factory=dict)  # node -> model -> replicas
    node_loads: dict[str, float] = field(default_factory=dict)


class Infeasible(ValueError):
    pass


def size(demands: list[Demand], capacity: float, utilisation: float = 0.8, peak: float = 2.0) -> Plan:
    """Replicas and replica size per model at the lowest CPU count that meets every target rate."""
    from scipy.optimize import Bounds, LinearConstraint, linprog, milp

    pairs = [(i, j) for i, d in enumerate(demands) for j in range(len(d.options))]
    k = len(pairs)
    if not k:
        raise Infeasible("no model to plan for")
    big = [math.ceil(capacity / demands[i].options[j].cpus) for i, j in pairs]  # replicas that could fit
    c = np.array([demands[i].options[j].cpus for i, j in pairs] + [0.0] * k)  # variables: x then y
    rows, lo, hi = [], [], []

    def row(entries):
        r = np.zeros(2 * k)
        for col, v in entries:
            r[col] = v
        return r

    for i, d in enumerate(demands):
        mine = [p for p, (ii, _) in enumerate(pairs) if ii == i]
        rows.append(row([(p, demands[i].options[pairs[p][1]].throughput) for p in mine]))
        lo.append(d.rate / utilisation)
        hi.append(np.inf)
        rows.append(row([(k + p, 1.0) for p in mine]))  # one size per model
        lo.append(1)
        hi.append(1)
    rows.append(row([(p, demands[i].options[j].cpus) for p, (i, j) in enumerate(pairs)]))
    lo.append(0)
    hi.append(capacity)
    for p in range(k):
        rows.append(row([(p, 1.0), (k + p, -big[p])]))  # x <= M y
        lo.append(-np.inf)
        hi.append(0)
        rows.append(row([(p, 1.0), (k + p, -1.0)]))  # a chosen size has at least one replica
        lo.append(0)
        hi.append(np.inf)
    allowed = [1.0 if demands[i].max_latency_s is None or demands[i].options[j].latency_s <= demands[i].max_latency_s
               else 0.0 for i, j in pairs]
    bounds = Bounds(np.zeros(2 * k), np.array(big + allowed, dtype=float))
    constraints = LinearConstraint(np.array(rows), np.array(lo), np.array(hi))
    res = milp(c, constraints=constraints, integrality=np.ones(2 * k), bounds=bounds)
    if not res.success:
        raise Infeasible(f"no plan meets the target rates within {capacity:g} CPUs and the latency bounds "
                         f"({res.message})")
    A = np.array(rows)
    ub = [(-A[r], -lo[r]) for r in range(len(rows)) if np.isfinite(lo[r])] + \
         [(A[r], hi[r]) for r in range(len(rows)) if np.isfinite(hi[r])]
    relaxed = linprog(c, A_ub=np.array([u[0] for u in ub]), b_ub=np.array([u[1] for u in ub]),
                      bounds=list(zip(bounds.lb, bounds.ub)))
    x = np.round(res.x[:k]).astype(int)
    used = float(c @ res.x)
    sizing = []
    for p, (i, j) in enumerate(pairs):
        if x[p] == 0:
            continue
        d, o = demands[i], demands[i].options[j]
        sizing.append(Sizing(d.model, o.cpus, int(x[p]), int(x[p]), float(o.throughput * x[p]), o.latency_s))
    # Peak bounds: the replicas a rate `peak` times the target needs, while the CPUs left last,
    # handed out in proportion to the extra each model needs.
    spare = capacity - used
    want = {s.model: max(0, math.ceil(peak * next(d.rate for d in demands if d.model == s.model) /
                                      (utilisation * s.throughput / s.replicas)) - s.replicas) for s in sizing}
    need = sum(want[s.model] * s.cpus for s in sizing)
    scale = min(1.0, spare / need) if need else 0.0
    for s in sizing:
        s.max_replicas = s.replicas + int(math.floor(want[s.model] * scale + 1e-9))
    return Plan(sizing, used, float(relaxed.fun) if relaxed.success else math.nan, capacity)


def place(sizing: list[Sizing], nodes: dict[str, float]) -> tuple[dict[str, dict[str, int]], dict[str, float]]:
    """Replicas onto nodes with balanced loads: the QP above, solved by SLSQP, then rounded."""
    from scipy.optimize import minimize

    names, M, N = list(nodes), len(sizing), len(nodes)
    cap = np.array([nodes[n] for n in names], dtype=float)
    cpus = np.array([s.cpus for s in sizing])
    reps = np.array([s.replicas for s in sizing], dtype=float)
    if cpus @ reps > cap.sum() + 1e-9:
        raise Infeasible(f"{cpus @ reps:g} CPUs of replicas do not fit the nodes' {cap.sum():g}")

    def loads(a):
        return cpus @ a.reshape(M, N)

    start = np.outer(reps, cap / cap.sum()).ravel()  # proportional to capacity: feasible
    res = minimize(lambda a: float(np.sum(loads(a) ** 2)), start, jac=lambda a: np.outer(cpus, 2 * loads(a)).ravel(),
                   method="SLSQP", bounds=[(0, None)] * (M * N),
                   constraints=[{"type": "eq", "fun": lambda a: a.reshape(M, N).sum(1) - reps},
                                {"type": "ineq", "fun": lambda a: cap - loads(a)}])
    a = res.x.reshape(M, N) if res.success else start.reshape(M, N)
    counts = np.floor(a + 1e-9).astype(int)
    for m in range(M):  # largest remainders, on nodes with room
        for _ in range(int(reps[m]) - counts[m].sum()):
            room = cap - cpus @ counts
            order = np.argsort(-(a[m] - counts[m]))
            n = next((n for n in order if room[n] >= cpus[m] - 1e-9), order[0])
            counts[m, n] += 1
    over = [names[n] for n in range(N) if cpus @ counts[:, n] > cap[n] + 1e-9]
    if over:  # whole replicas do not always pack where fractions did
        raise Infeasible(f"the replicas do not pack onto the nodes without overloading {', '.join(over)}")
    placement = {names[n]: {s.model: int(counts[m, n]) for m, s in enumerate(sizing) if counts[m, n]}
                 for n in range(N)}
    return placement, {names[n]: float(cpus @ counts[:, n]) for n in range(N)}


def plan(demands: list[Demand], nodes: dict[str, float], utilisation: float = 0.8, peak: float = 2.0) -> Plan:
    out = size(demands, sum(nodes.values()), utilisation, peak)
    out.placement, out.node_loads = place(out.sizing, nodes)
    return out


def probe(model, n: int, sizes: list[float], max_batch_size: int = 64, repeats: int = 3, seed: int = 0) -> list[Option]:
    """Measure one replica of `model` at each size: a full batch of requests of n samples each,
    drawn as the model server draws them (one forward for the batch), with torch threads set to
    the size rounded up. A fractional size is a share of one core, so its throughput is that share
    of a one-thread replica's and its latency the inverse."""
    import time

    import torch

    per_batch = max(1, max_batch_size // n)  # requests in one batch
    before = torch.get_num_threads()
    out = []
    try:
        for cpus in sizes:
            torch.set_num_threads(max(1, math.ceil(cpus)))
            model.sample(n, generator=torch.Generator().manual_seed(seed))  # warm-up
            times = []
            for r in range(repeats):
                t0 = time.perf_counter()
                model.sample(per_batch * n, generator=torch.Generator().manual_seed(seed + r))
                times.append(time.perf_counter() - t0)
            batch_s = sorted(times)[len(times) // 2] / min(1.0, cpus)
            out.append(Option(cpus, per_batch / batch_s, batch_s))
    finally:
        torch.set_num_threads(before)
    return out


def serve_args(p: Plan) -> dict:
    """The plan as the `replicas` argument of the Serve app (services/app.py): autoscaling bounds
    and CPUs per model."""
    return {s.model: {"min_replicas": s.replicas, "max_replicas": max(s.replicas, s.max_replicas), "cpus": s.cpus}
            for s in p.sizing}
