"""The results store under load: thousands of runs of a kind that computes nothing
(`benchmarks/noop_kind.py`), so what is measured is the driver's and the database's own cost.
SQLite (a file, WAL, synchronous=FULL) and PostgreSQL (a throw-away local cluster, fsync on,
`benchmarks/pg_cluster.py`) side by side, with the ratio PostgreSQL / SQLite.

1. Per-run store overhead: one driver (`run_sweep`, executor inline: no worker processes) on a
   fresh database, N runs. Runs/s and ms per run, split into the time spent in
   `ResultStore.claim` (one transaction per run, as `WorkQueue` dispatches it), in
   `ResultStore.record` (one per run) and the rest (planning, the driver, the kind). The store's
   methods are timed in place, in the real sweep. A second table compares the first and the
   last 10% of the claim and record calls of the largest sweep: a cost that grows with the
   database shows there.
2. Claim contention: two drivers (two processes, started together) on one spec and one fresh
   database, against one driver for the same runs; how many runs each computed, how many claims
   found a run busy, and how many runs were computed twice (the kind logs every computation;
   must be 0).
3. Reading as the database grows: in a fresh process, `ResultStore.runs()` (what every report
   reads first; and `runs(status="failed")`, which the report asks for too) and
   `ttrlab.report.build_report(db, out)` on the databases of step 1, in a process already
   connected: a second call's seconds, and the peak RSS of the first call above the RSS before
   it. The noop runs form no figure and no
   theory section (their kind has no pipeline experiment): the report loads the runs, groups them
   into cells (one per x, seeds 0-4), aggregates them and writes the tables and the HTML.

Every driver and reader runs in its own spawned process; PostgreSQL's memory is the client's
only (the server's is not counted).

    .venv/bin/python benchmarks/store_load.py [--sizes 100,1000,10000] [--backends sqlite,postgresql]
        [--contention 10000] [--tmp DIR]

`--contention` (default 1000, or the largest size if smaller) is the number of runs the two
drivers share. The default run took about 10 minutes on 2 busy cores (load ~2.5); the 10,000-run
sweeps are most of it, and `--contention 10000` adds two more of them per backend. PostgreSQL is left out, with the reason printed, where its server binaries are
missing. The SQLite files go to the system temp folder (or --tmp): its disk's fsync is most of
SQLite's per-run cost, so say which disk when comparing machines.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import queue as queue_module
import resource
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import _readme  # benchmarks/_readme.py: --write-readme

HERE = Path(__file__).resolve().parent
PLUGIN = "noop_kind"
SEEDS = [0, 1, 2, 3, 4]
TIMED = ("statuses", "register_sweep", "link", "claim", "record", "heartbeat", "release")
BACKENDS = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def _use_noop_kind() -> None:
    """The noop kind through TTRLAB_PLUGINS, here and in every process started from here."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    os.environ["TTRLAB_PLUGINS"] = PLUGIN
    from ttrlab.kinds.registry import load_plugins

    load_plugins()


def sweep_spec(n: int) -> dict:
    seeds = SEEDS if n % len(SEEDS) == 0 else [0]
    return {"name": f"load-{n}", "kind": "noop", "seeds": seeds, "axes": {"x": list(range(n // len(seeds)))}}


# ---- child processes ----------------------------------------------------------------------------
def _instrument(calls: dict[str, list[float]], outcomes: Counter) -> None:
    """Time every call of the store's methods in TIMED (and count claim outcomes) in this process."""
    from ttrlab.sweep.store import ResultStore

    for name in TIMED:
        original = getattr(ResultStore, name)

        def timed(self, *args, _original=original, _name=name, **kwargs):
            started = time.perf_counter()
            out = _original(self, *args, **kwargs)
            calls.setdefault(_name, []).append(time.perf_counter() - started)
            if _name == "claim":
                outcomes.update(out.values())
            return out

        setattr(ResultStore, name, timed)


def _driver(db: str, spec: dict, log: str, ready, go, results) -> None:
    """One sweep driver: imports, says it is `ready`, waits for `go`, runs the sweep and puts
    what it measured on `results`."""
    try:
        _use_noop_kind()
        os.environ["TTRLAB_NOOP_LOG"] = log
        from ttrlab.sweep import run_sweep

        calls: dict[str, list[float]] = {}
        outcomes: Counter = Counter()
        _instrument(calls, outcomes)
        ready.put(None)
        go.wait()
        started = time.monotonic()
        summary = run_sweep(spec, db, executor="inline", progress=False)
        ended = time.monotonic()
        results.put({"start": started, "end": ended, "summary": summary, "calls": calls, "outcomes": dict(outcomes)})
    except BaseException:
        ready.put(None)  # (the parent then finds the error on `results`)
        results.put({"error": traceback.format_exc()})


def _reader(db: str, what: str, out_dir: str, results) -> None:
    """`runs` (ResultStore.runs(), what every report reads first) or `report` (build_report) in
    this fresh process, whose database driver is loaded and connected first (`counts()`). Memory:
    the peak RSS of the first call above the RSS just before it (the kernel's high-water mark,
    reset through /proc/self/clear_refs). Seconds: a second call's (the first one also pays for
    compiling SQL and templates). For `runs`, also `runs(status="failed")` (none stored here;
    build_report asks for them too)."""
    try:
        _use_noop_kind()
        from ttrlab.report import build_report
        from ttrlab.sweep.store import FAILED, ResultStore

        def once() -> int:
            if what == "report":
                build_report(db, out_dir)
                return 0
            with ResultStore(db, create=False) as store:
                return len(store.runs())

        with ResultStore(db, create=False) as store:
            store.counts()
        exact = _reset_peak()
        before = _status_mb("VmRSS")
        started = time.perf_counter()
        count = once()
        first = time.perf_counter() - started
        peak = _status_mb("VmHWM") if exact else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        started = time.perf_counter()
        once()
        out = {"seconds": time.perf_counter() - started, "first": first, "delta_mb": peak - before,
               "exact_peak": exact, "runs": count}
        if what == "runs":
            with ResultStore(db, create=False) as store:
                started = time.perf_counter()
                out["failed_runs"] = len(store.runs(status=FAILED))
                out["failed_seconds"] = time.perf_counter() - started
        results.put(out)
    except BaseException:
        results.put({"error": traceback.format_exc()})


def _reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM); False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _children(target, argsets: list[tuple], together: bool = False) -> list[dict]:
    """Start one spawned process per argument tuple and collect one result dict from each. With
    `together`, each child also gets a `ready` queue and a `go` event: all are released at once
    when every one of them has imported and said it is ready."""
    ctx = mp.get_context("spawn")
    results, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    processes = [ctx.Process(target=target, args=(*args, *((ready, go) if together else ()), results), daemon=True)
                 for args in argsets]
    for process in processes:
        process.start()
    if together:
        for _ in processes:
            _get(ready, processes)
        go.set()
    out = [_get(results, processes) for _ in processes]
    for process in processes:
        process.join()
    for result in out:
        if "error" in result:
            raise RuntimeError(f"a child process failed:\n{result['error']}")
    return out


def _get(queue, processes):
    """The next item of `queue`; RuntimeError if a child died without one (SIGKILL, OOM)."""
    while True:
        try:
            return queue.get(timeout=5)
        except queue_module.Empty:
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a child process died (exit codes {dead})") from None


def run_drivers(db: str, spec: dict, count: int, log: Path) -> dict:
    """`count` drivers at once on `db`; their results, the wall time and the computation counts."""
    from noop_kind import computations

    drivers = _children(_driver, [(db, spec, str(log))] * count, together=True)
    counts = computations(log)
    calls: dict[str, list[float]] = {}
    for driver in drivers:
        for name, seconds in driver["calls"].items():
            calls.setdefault(name, []).extend(seconds)
    return {
        "wall": max(d["end"] for d in drivers) - min(d["start"] for d in drivers),
        "drivers": drivers,
        "ran": sum(d["summary"]["ran"] for d in drivers),
        "failed": sum(d["summary"]["failed"] for d in drivers),
        "twice": sum(1 for n in counts.values() if n > 1),
        "computed": len(counts),
        "calls": calls,
        "busy": sum(d["outcomes"].get("busy", 0) for d in drivers),
    }


def read_back(db: str, tmp: Path) -> dict:
    out = {}
    for what in ("runs", "report"):
        out[what] = _children(_reader, [(db, what, str(tmp / f"report-{what}"))])[0]
        shutil.rmtree(tmp / f"report-{what}", ignore_errors=True)
    return out


# ---- the backends -------------------------------------------------------------------------------
class Backend:
    """Fresh, empty databases of one kind, each with the ttrlab schema already created (so the
    drivers do not race to create it; that race is a test's, not a load)."""

    def __init__(self, name: str, tmp: Path, cluster=None):
        self.name, self.tmp, self.cluster = name, tmp, cluster

    def fresh(self, label: str) -> str:
        from ttrlab.sweep.store import ResultStore

        if self.cluster is None:
            db = str(self.tmp / f"{label}.sqlite")
        else:
            self.cluster.execute(f'CREATE DATABASE "{label}"')
            db = self.cluster.url(label)
        ResultStore(db).close()
        return db

    def size_mb(self, db: str) -> float:
        if self.cluster is None:
            return sum(p.stat().st_size for p in Path(db).parent.glob(Path(db).name + "*")) / 2**20
        from sqlalchemy import create_engine, text

        engine = create_engine(db)
        try:
            with engine.connect() as connection:
                return connection.execute(text("SELECT pg_database_size(current_database())")).scalar() / 2**20
        finally:
            engine.dispose()


def measure(backend: Backend, sizes: list[int], contention: int) -> dict:
    results: dict = {"single": {}, "read": {}, "size_mb": {}}
    began = time.perf_counter()

    def say(what: str) -> None:
        print(f"  [{time.perf_counter() - began:6.0f} s] {BACKENDS[backend.name]}: {what} ...", flush=True)

    for n in sizes:
        db = backend.fresh(f"one_{n}")
        say(f"one driver, {n} runs")
        results["single"][n] = run_drivers(db, sweep_spec(n), 1, backend.tmp / f"one_{n}.log")
        results["size_mb"][n] = backend.size_mb(db)
        say(f"reading {n} runs back (runs(), build_report)")
        results["read"][n] = read_back(db, backend.tmp)
    if contention not in results["single"]:
        say(f"one driver, {contention} runs (contention baseline)")
        results["single"][contention] = run_drivers(backend.fresh(f"one_{contention}"), sweep_spec(contention), 1,
                                                    backend.tmp / f"one_{contention}.log")
    say(f"two drivers at once, {contention} runs")
    results["two"] = run_drivers(backend.fresh(f"two_{contention}"), sweep_spec(contention), 2,
                                 backend.tmp / f"two_{contention}.log")
    say("done")
    return results


# ---- the tables ---------------------------------------------------------------------------------
def _ms(seconds: list[float], per: int) -> float:
    return 1000 * sum(seconds) / per if per else float("nan")


def _decile_ms(seconds: list[float], last: bool) -> float:
    k = max(1, len(seconds) // 10)
    part = seconds[-k:] if last else seconds[:k]
    return 1000 * sum(part) / len(part)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def _breakdown(run: dict) -> dict:
    ran, calls = run["ran"], run["calls"]
    total = 1000 * run["wall"] / ran
    claim, record = _ms(calls.get("claim", []), ran), _ms(calls.get("record", []), ran)
    return {"runs_s": ran / run["wall"], "ms": total, "claim": claim, "record": record, "other": total - claim - record}


def table_overhead(results: dict, sizes: list[int]) -> None:
    names = list(results)
    print("\n1. Per-run store overhead: one driver, executor inline, fresh database, noop runs")
    print("   ms/run = wall / runs; claim, record = ms/run inside ResultStore.claim / .record; other = the rest")
    head = f"{'runs':>7s} |" + "|".join(f" {BACKENDS[b]:<10s} {'runs/s':>7s} {'ms/run':>7s} {'claim':>6s} {'record':>6s} "
                                        f"{'other':>6s} " for b in names)
    if len(names) == 2:
        head += f"| {'PG/SQLite ms/run':>16s}"
    print(head)
    rows = {b: {n: _breakdown(results[b]["single"][n]) for n in sizes} for b in names}
    for n in sizes:
        line = f"{n:7d} |"
        for b in names:
            r = rows[b][n]
            line += f" {'':10s} {r['runs_s']:7.1f} {r['ms']:7.2f} {r['claim']:6.2f} {r['record']:6.2f} {r['other']:6.2f} |"
        if len(names) == 2:
            line += f" {_ratio(rows['postgresql'][n]['ms'], rows['sqlite'][n]['ms']):>16s}"
        print(line.rstrip("|"))
    shows = []
    for b in names:
        lo, hi = rows[b][sizes[0]], rows[b][sizes[-1]]
        share = (hi["claim"] + hi["record"]) / hi["ms"]
        shows.append(f"{BACKENDS[b]} {lo['ms']:.2f} -> {hi['ms']:.2f} ms/run from {sizes[0]} to {sizes[-1]} runs "
                     f"(x{hi['ms'] / lo['ms']:.2f}), {100 * share:.0f}% of it in claim + record")
    if len(names) == 2:
        shows.append(f"PostgreSQL / SQLite at {sizes[-1]} runs: "
                     f"x{rows['postgresql'][sizes[-1]]['ms'] / rows['sqlite'][sizes[-1]]['ms']:.2f}")
    print("   what it shows: " + "; ".join(shows))

    big = sizes[-1]
    print(f"\n1b. Within the {big}-run sweep: mean ms per call, first vs last 10% of calls (growth with the database)")
    print(f"{'backend':>11s} | {'claim first':>11s} {'claim last':>10s} {'x':>5s} | {'record first':>12s} "
          f"{'record last':>11s} {'x':>5s}")
    growth = []
    for b in names:
        calls = results[b]["single"][big]["calls"]
        c0, c1 = _decile_ms(calls["claim"], False), _decile_ms(calls["claim"], True)
        r0, r1 = _decile_ms(calls["record"], False), _decile_ms(calls["record"], True)
        print(f"{BACKENDS[b]:>11s} | {c0:11.2f} {c1:10.2f} {c1 / c0:5.2f} | {r0:12.2f} {r1:11.2f} {r1 / r0:5.2f}")
        verdict = ("grows with the database" if max(c1 / c0, r1 / r0) > 1.25 else
                   "does not grow with the database" if max(c1 / c0, r1 / r0) >= 0.8 else
                   "is lower late than early (no growth with the database)")
        growth.append(f"{BACKENDS[b]}: claim x{c1 / c0:.2f}, record x{r1 / r0:.2f} from the first to the last "
                      f"tenth, so the per-run cost {verdict}")
    print("   what it shows: " + "; ".join(growth))


def table_contention(results: dict, contention: int) -> None:
    names = list(results)
    print(f"\n2. Claim contention: two drivers at once vs one driver, {contention} runs, one database")
    rows: list[tuple[str, list]] = []

    def add(label, values, ratio=True):
        rows.append((label, values, ratio))

    one = {b: results[b]["single"][contention] for b in names}
    two = {b: results[b]["two"] for b in names}
    add("one driver: wall s", [one[b]["wall"] for b in names])
    add("two drivers: wall s", [two[b]["wall"] for b in names])
    add("speed-up (one / two)", [one[b]["wall"] / two[b]["wall"] for b in names])
    add("two: wall of A / B s", [" / ".join(f"{d['end'] - d['start']:.1f}" for d in two[b]["drivers"]) for b in names],
        False)
    add("two: runs computed by A / B", [" / ".join(str(d["summary"]["ran"]) for d in two[b]["drivers"]) for b in names],
        False)
    add("two: stored by the other (A / B)",
        [" / ".join(str(d["summary"]["stored_elsewhere"]) for d in two[b]["drivers"]) for b in names], False)
    add("two: claim calls, both (per run)", [f"{len(two[b]['calls']['claim'])} "
                                             f"({len(two[b]['calls']['claim']) / contention:.2f})" for b in names], False)
    add("two: claims found busy", [two[b]["busy"] for b in names], False)
    add("two: claim ms/run (one: )", [f"{_ms(two[b]['calls']['claim'], two[b]['ran']):.2f} "
                                      f"({_ms(one[b]['calls']['claim'], one[b]['ran']):.2f})" for b in names], False)
    add("two: record ms/run (one: )", [f"{_ms(two[b]['calls']['record'], two[b]['ran']):.2f} "
                                       f"({_ms(one[b]['calls']['record'], one[b]['ran']):.2f})" for b in names], False)
    add("two: runs computed twice", [two[b]["twice"] for b in names], False)
    add("two: runs never computed", [contention - two[b]["computed"] for b in names], False)
    add("two: failed runs", [two[b]["failed"] for b in names], False)
    print(f"{'':34s} " + " ".join(f"{BACKENDS[b]:>14s}" for b in names) + ("  PG/SQLite" if len(names) == 2 else ""))
    for label, values, ratio in rows:
        cells = " ".join(f"{v:14.2f}" if isinstance(v, float) else f"{v!s:>14s}" for v in values)
        tail = f"  {_ratio(values[1], values[0]):>9s}" if len(names) == 2 and ratio else ""
        print(f"{label:34s} {cells}{tail}")
    shows = []
    for b in names:
        ran = sorted(d["summary"]["ran"] for d in two[b]["drivers"])
        shows.append(f"{BACKENDS[b]}: two drivers x{one[b]['wall'] / two[b]['wall']:.2f} the speed of one, split "
                     f"{ran[-1]}:{ran[0]}, {len(two[b]['calls']['claim']) / contention:.2f} claim calls per run, "
                     f"{two[b]['twice']} run(s) computed twice, {contention - two[b]['computed']} never")
    print("   what it shows: " + "; ".join(shows))


def table_reading(results: dict, sizes: list[int]) -> None:
    names = list(results)
    exact = all(results[b]["read"][n][w]["exact_peak"] for b in names for n in sizes for w in ("runs", "report"))
    print("\n3. Reading as the database grows: fresh process, connected; s = a second call's seconds; MB = peak RSS of "
          "the first call above the RSS before it" + ("" if exact else " (peak not resettable here: lifetime peak)"))
    print("   runs(): ResultStore.runs(); failed(): runs(status='failed'), none stored; report: build_report(db, out)")
    head = f"{'runs':>7s} |" + "|".join(f" {BACKENDS[b]:<10s} {'db MB':>6s} {'runs() s':>8s} {'MB':>6s} "
                                        f"{'failed() s':>10s} {'report s':>8s} {'MB':>6s} " for b in names)
    if len(names) == 2:
        head += f"| {'PG/SQLite runs()':>16s} {'report':>6s}"
    print(head)
    for n in sizes:
        line = f"{n:7d} |"
        for b in names:
            r = results[b]["read"][n]
            line += (f" {'':10s} {results[b]['size_mb'][n]:6.2f} {r['runs']['seconds']:8.3f} {r['runs']['delta_mb']:6.1f} "
                     f"{r['runs']['failed_seconds']:10.3f} {r['report']['seconds']:8.3f} {r['report']['delta_mb']:6.1f} |")
        if len(names) == 2:
            pg, lite = results["postgresql"]["read"][n], results["sqlite"]["read"][n]
            line += (f" {_ratio(pg['runs']['seconds'], lite['runs']['seconds']):>16s} "
                     f"{_ratio(pg['report']['seconds'], lite['report']['seconds']):>6s}")
        print(line.rstrip("|"))
    shows = []
    lo, hi = sizes[0], sizes[-1]
    for b in names:
        r0, r1 = results[b]["read"][lo], results[b]["read"][hi]
        growth = (f"{r0['report']['seconds']:.2f} -> {r1['report']['seconds']:.2f} s for x{hi / lo:.0f} runs "
                  f"(x{r1['report']['seconds'] / r0['report']['seconds']:.1f})" if hi > lo
                  else f"{r1['report']['seconds']:.2f} s")
        per_run_kb = 1024 * (r1["report"]["delta_mb"] if hi == lo else r1["report"]["delta_mb"] - r0["report"]["delta_mb"]) \
            / (hi if hi == lo else hi - lo)
        shows.append(f"{BACKENDS[b]}: report {growth}, "
                     f"runs() + failed() {100 * (r1['runs']['seconds'] + r1['runs']['failed_seconds']) / r1['report']['seconds']:.0f}% "
                     f"of it at {hi}, failed() with no failed run {1000 * r1['runs']['failed_seconds']:.0f} ms, "
                     f"~{per_run_kb:.1f} KB of report peak memory per run")
    print("   what it shows: " + "; ".join(shows))


def _machine() -> str:
    import sqlalchemy
    import sqlite3

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{platform.node()}: {cores} cores usable of {os.cpu_count()}, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, SQLAlchemy {sqlalchemy.__version__}")


def _load() -> str:
    return "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="runs per database, comma-separated (ascending)")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--contention", type=int, default=None,
                        help="runs the two drivers share (default: 1000, or the largest size if smaller)")
    parser.add_argument("--tmp", default=None, help="folder for the SQLite files and logs (default: the system temp)")
    args = _readme.parse_args(parser)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown or not sizes or min(sizes) < 1:
        parser.error(f"--backends from {', '.join(BACKENDS)}; --sizes positive integers (got {unknown or sizes})")
    contention = args.contention or min(1000, sizes[-1])

    began = time.perf_counter()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop the cluster, delete the files
    _use_noop_kind()
    print(_machine())
    print(f"at start: {_load()}")
    results: dict = {}
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ttrlab-load-", dir=args.tmp)))
        print(f"SQLite files under {tmp} (WAL, synchronous=FULL: one fsync per commit, two commits per run)")
        for name in backends:
            cluster = None
            if name == "postgresql":
                import pg_cluster

                try:
                    cluster = stack.enter_context(pg_cluster.start_cluster())
                except pg_cluster.ClusterError as error:
                    print(f"PostgreSQL left out: {error}")
                    continue
                print(f"{cluster.version()}: local cluster on 127.0.0.1:{cluster.port}, fsync on, "
                      f"synchronous_commit on ({pg_cluster.SERVER_OPTIONS})")
            folder = tmp / name
            folder.mkdir()
            results[name] = measure(Backend(name, folder, cluster), sizes, contention)
    if results:
        table_overhead(results, sizes)
        table_contention(results, contention)
        table_reading(results, sizes)
    print(f"\nat end: {_load()}")
    print(f"whole benchmark: {time.perf_counter() - began:.0f} s wall")
    return 0


if __name__ == "__main__":
    sys.exit(_readme.run(main))
