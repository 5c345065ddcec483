"""Black-box checker of `wasmos sim`, written independently of the Rust code.

It generates random scenarios, runs the `wasmos` binary on each (scenario on stdin) and
checks the contract of issue 4, item 8:

* single-agent scenarios: the `launched` counts equal those of an exact (Fraction)
  progressive-filling, hierarchical weighted DRF reference: repeatedly give one task to
  the framework with the lowest (role share / role weight, own share, listed order) among
  those with tasks left, whose task fits the agent's free resources and whose
  `attributes` the agent has; stop when none is left;
* multi-agent scenarios: no agent is over-committed and no framework with tasks left
  could still fit one on the leftover of an agent it accepts;
* always: the output is exactly `{"launched":{..every framework, in order..},
  "placements":[{"framework","agent","tasks">0}]}` and placements sum to `launched`.

Scenarios mix 1-4 resource kinds, fractional amounts (0.1, 0.25, ...), tasks needing a
kind the agent lacks, tasks of a thousandth of a cpu with a bounded `max_tasks`, 1-55 frameworks,
shared roles with weights 0.25..10, `max_tasks` 0..100, exact ties (cloned frameworks)
and framework `attributes` constraints.

Run (after `cargo build --bin wasmos`):

    python3 tests/sim_reference.py SEED COUNT single|multi [WASMOS_BINARY]

e.g. `python3 tests/sim_reference.py 1 500 single`; it prints each mismatch with its
scenario and ends with `done COUNT bad N`; exit code 1 when N > 0. The Rust proptests
in master/tests/master/sim.rs are the CI version of the same checks.
"""
import json, math, random, subprocess, sys, time
from fractions import Fraction

BIN = sys.argv[4] if len(sys.argv) > 4 else "target/debug/wasmos"


def millis(v):
    # proto::Scalar::from_units: round(v*1000) (round half away from zero; f64 product)
    x = v * 1000.0
    r = math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)
    return int(r)


def res(d):
    return {k: millis(v) for k, v in d.items() if millis(v) != 0}


def drf_single(sc):
    """Progressive filling on a single agent."""
    agent = sc["agents"][0]
    free = res(agent["resources"])
    total = dict(free)
    fws = sc["frameworks"]
    n = len(fws)
    task = [res(f["task"]) for f in fws]
    left = [f.get("max_tasks") for f in fws]
    cons = [f.get("attributes") or {} for f in fws]
    role = [f.get("role", f["id"]) for f in fws]
    weight = {}
    for f in fws:
        weight[role[fws.index(f)]] = Fraction(f.get("weight", 1.0))
    launched = [0] * n
    attrs = agent.get("attributes", {})

    def ok_attrs(i):
        for k, v in cons[i].items():
            av = attrs.get(k)
            if av is None:
                return False
            avs = av if isinstance(av, list) else [av]
            if v not in avs:
                return False
        return True

    def share(alloc):
        s = Fraction(0)
        for k, t in total.items():
            if t > 0:
                s = max(s, Fraction(alloc.get(k, 0), t))
        return s

    def fits(i):
        return all(free.get(k, 0) >= v for k, v in task[i].items())

    # first subscription order of each role, role membership
    while True:
        cands = [i for i in range(n) if (left[i] is None or left[i] > 0) and fits(i) and ok_attrs(i)]
        if not cands:
            break
        if not free:  # no offer possible when nothing is free
            break

        def key(i):
            r = role[i]
            ralloc = {}
            for j in range(n):
                if role[j] == r:
                    for k, v in task[j].items():
                        ralloc[k] = ralloc.get(k, 0) + v * launched[j]

            falloc = {k: v * launched[i] for k, v in task[i].items()}
            return (share(ralloc) / weight[r], share(falloc), i)

        best = min(cands, key=key)
        launched[best] += 1
        if left[best] is not None:
            left[best] -= 1
        for k, v in task[best].items():
            free[k] -= v
        if sum(launched) > 3000:
            raise RuntimeError("too many")
    return {f["id"]: launched[i] for i, f in enumerate(fws)}


def run(sc, timeout=60):
    t0 = time.time()
    p = subprocess.run([BIN, "sim"], input=json.dumps(sc).encode(), capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode(), time.time() - t0


def check_shape(sc, out):
    rep = json.loads(out)
    assert set(rep) == {"launched", "placements"}, rep
    assert list(rep["launched"]) == [f["id"] for f in sc["frameworks"]], rep
    for p in rep["placements"]:
        assert set(p) == {"framework", "agent", "tasks"}, p
        assert p["tasks"] > 0
    tot = {}
    for p in rep["placements"]:
        tot[p["framework"]] = tot.get(p["framework"], 0) + p["tasks"]
    for f, n in rep["launched"].items():
        assert tot.get(f, 0) == n, (f, n, tot)
    return rep


def check_multi(sc, rep):
    agents = {a["id"]: a for a in sc["agents"]}
    fws = {f["id"]: f for f in sc["frameworks"]}
    free = {a: res(agents[a]["resources"]) for a in agents}
    for p in rep["placements"]:
        t = res(fws[p["framework"]]["task"])
        for k, v in t.items():
            free[p["agent"]][k] = free[p["agent"]].get(k, 0) - v * p["tasks"]
    for a, fr in free.items():
        for k, v in fr.items():
            assert v >= 0, ("overcommit", a, k, v)
    for f in sc["frameworks"]:
        n = rep["launched"][f["id"]]
        mt = f.get("max_tasks")
        if mt is not None:
            assert n <= mt
            if n >= mt:
                continue
        t = res(f["task"])
        for a in agents:
            attrs = agents[a].get("attributes", {})
            cons = f.get("attributes") or {}
            if any((attrs.get(k) if not isinstance(attrs.get(k), list) else None) != v and not (isinstance(attrs.get(k), list) and v in attrs.get(k)) for k, v in cons.items()):
                continue
            if all(free[a].get(k, 0) >= v for k, v in t.items()):
                raise AssertionError(("could still fit", f["id"], a))


NAMES = ["cpus", "mem", "disk", "gpus", "net"]


def rnd_amount(r, big):
    c = r.random()
    if c < 0.3:
        return r.randint(1, 16)
    if c < 0.5:
        return round(r.uniform(0.1, 4), r.choice([1, 2, 3]))
    if c < 0.6:
        return r.choice([0.1, 0.2, 0.3, 0.5, 0.7])
    if c < 0.8:
        return r.randint(64, 4096)
    return r.randint(1, big)


def rnd_res(r, kinds, big, allow_zero=False):
    d = {}
    for k in kinds:
        d[k] = rnd_amount(r, big)
        if allow_zero and r.random() < 0.05:
            d[k] = 0
    return d


def rnd_scenario(r, nagents=1):
    kinds = r.sample(NAMES, r.randint(1, 4))
    agents = []
    for a in range(nagents):
        ak = kinds if r.random() < 0.8 else r.sample(NAMES, r.randint(1, 4))
        ag = {"id": f"a{a}", "resources": {k: v * r.choice([1, 2, 4]) for k, v in rnd_res(r, ak, 4000).items()}}
        if r.random() < 0.3:
            ag["attributes"] = {"arch": r.choice(["x86_64", "aarch64"])}
        agents.append(ag)
    nf = r.choice([1, 2, 3, 4, 5, 8, 12, 20, 55])
    roles = [f"r{i}" for i in range(r.randint(1, max(1, nf // 2 + 1)))]
    rw = {ro: r.choice([1, 1, 0.5, 2, 3, 0.25, 1.5, 10]) for ro in roles}
    fws = []
    for i in range(nf):
        fk = r.sample(kinds, r.randint(1, len(kinds)))
        if r.random() < 0.05:
            fk = fk + ["gpus2"]
        t = rnd_res(r, fk, 2000, allow_zero=True)
        if all(millis(v) == 0 for v in t.values()):
            t[fk[0]] = 1
        f = {"id": f"fw{i}", "task": t}
        c = r.random()
        if c < 0.4:
            f["role"] = r.choice(roles)
            if r.random() < 0.7 or rw[f["role"]] != 1:
                f["weight"] = rw[f["role"]]
        elif c < 0.6:
            f["weight"] = r.choice([0.5, 3, 2, 1, 0.1, 7])
        if r.random() < 0.5:
            f["max_tasks"] = r.choice([0, 1, 2, 3, 5, 10, 100])
        if r.random() < 0.03:
            f["task"] = {"cpus": 0.001}; f["max_tasks"] = r.choice([1, 2, 5])
        if r.random() < 0.2:
            f["attributes"] = {"arch": r.choice(["x86_64", "aarch64"])}
        if fws and r.random() < 0.25:  # clone of an earlier one: exact ties
            g = dict(r.choice(fws)); g["id"] = f"fw{i}"; f = g
        fws.append(f)
    # roles shared: make weights consistent (unset weight means 1)
    seen = {}
    for f in fws:
        ro = f.get("role", f["id"])
        w = f.get("weight", 1)
        if ro in seen and seen[ro] != w:
            f["weight"] = seen[ro]
            if seen[ro] == 1:
                f.pop("weight", None)
        seen.setdefault(ro, f.get("weight", 1))
    r.shuffle(fws)
    return {"agents": agents, "frameworks": fws}


def main():
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    mode = sys.argv[3] if len(sys.argv) > 3 else "single"
    r = random.Random(seed)
    bad = 0
    for it in range(count):
        sc = rnd_scenario(r, 1 if mode == "single" else r.randint(2, 12))
        try:
            exp = drf_single(sc) if mode == "single" else None
        except RuntimeError:
            continue
        code, out, err, dt = run(sc)
        if code != 0:
            print("EXIT", code, err, json.dumps(sc))
            bad += 1
            continue
        rep = check_shape(sc, out)
        try:
            if mode == "single":
                assert rep["launched"] == exp, (rep["launched"], exp)
            check_multi(sc, rep)
        except AssertionError as e:
            bad += 1
            print("MISMATCH", e, json.dumps(sc))
            if bad > 5:
                break
    print("done", count, "bad", bad)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
