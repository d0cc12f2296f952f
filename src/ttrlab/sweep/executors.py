"""Executors: run work units somewhere and hand each run's outcome back to the driver, which
writes it to the database the moment it arrives (only the driver touches the database).

A work unit (`groups.work_units`) is a list of planned runs dispatched as one task: a unit of
one runs through `execute_one`, a fused unit of K runs through its kind's `run_group` in one
worker, and either way the driver gets one outcome per run (`execute_unit`). Executors take
units from a `claims.WorkQueue` only when they can start them, so the runs are claimed in the
database the moment they are dispatched (several drivers on one database split the work).

- `inline`: in this process, one unit after another (debugging, benchmarks).
- `local`: a pool of long-lived worker processes ("spawn"), each with its own model cache
  (`ttrlab.models.loading` caches the pretrained weights per process, so a worker loads a model once
  and then only copies it per run). The driver hands a worker its next unit when it is free,
  so it always knows which unit each worker holds: a worker that dies (OOM killer, segfault)
  fails every run of that unit with the exit code and is replaced. Workers ignore SIGINT, SIGTERM
  and SIGHUP (a terminal's Ctrl-C or hangup and a batch system's SIGTERM reach the whole process group); the
  driver then kills them and stops — finished runs are already in the database, the runs in
  flight are redone next time. Workers exit by themselves if the driver disappears (SIGKILL).
  When the spec's runs need GPUs (`resources.gpus > 0`) the pool is sized by GPUs instead of
  cores, and each worker is pinned to its own GPU(s) through `CUDA_VISIBLE_DEVICES` (see
  `gpu_slots`).
- `ray`: each unit is a Ray task with the spec's resource needs of one run (`num_cpus`,
  `num_gpus`: a fused unit shares one run's device, which is what fusing is for); see
  docs/sweeps.md for a real cluster.

Workers resolve a run's data folders where they run (`ttrlab.data.folders`): local workers
inherit the driver's whole environment, and a Ray instance this driver starts or joins gets
`forwarded_environment()` (every data folder's variable among them).
"""
from __future__ import annotations

import datetime as dt
import itertools
import math
import multiprocessing as mp
import os
import queue as queue_module
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ttrlab.core.errors import UserError
from ttrlab.core.registry import Registry
from ttrlab.sweep.claims import WorkQueue
from ttrlab.sweep.groups import Unit, unit_label
from ttrlab.sweep.monitor import Monitor, Throttle
from ttrlab.sweep.outcome import Outcome
from ttrlab.sweep.spec import PlannedRun, Resources


OnOutcome = Callable[[Outcome], None]
RunOutcome = tuple[dict | None, str | None, dt.datetime | None, float | None]  # Outcome without its run


def _no_check(resources: Resources, workers: int | None) -> None:
    return None


@dataclass(frozen=True)
class Executor:
    """A registered executor. `run(queue, on_outcome, monitor, resources, workers=None, **options)`
    runs the work units it takes from `queue` (a `claims.WorkQueue`: call `take()` only when a
    unit can start; None with `queue.exhausted` False means "ask again soon"), calls
    `on_outcome` once per run and `monitor.start_run`/`finish_unit` once per unit;
    `check(resources, workers)` raises a UserError when this executor
    cannot serve the spec here (no GPU visible, an extra not installed) — the driver calls it
    before it writes anything."""

    run: Callable[..., None]
    check: Callable[[Resources, int | None], None] = _no_check
    on_this_machine: bool = True  # the runs compute here (so their devices must exist here)


EXECUTORS: Registry[Executor] = Registry("executor")


def executor(name: str, check: Callable[[Resources, int | None], None] = _no_check, on_this_machine: bool = True):
    """Register the decorated run function as executor `name`."""
    def register(run: Callable[..., None]) -> Callable[..., None]:
        EXECUTORS.register(name)(Executor(run, check, on_this_machine))
        return run

    return register


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _set_threads(threads: int) -> None:
    """Torch threads per worker: the environment (read when torch is first imported) and, if a
    kind imported torch already, torch itself. Workers of kinds without torch never import it."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def execute_one(kind_name: str, config_dict: dict[str, Any], progress=None) -> tuple[dict | None, str | None, dt.datetime, float]:
    """Run one config of a kind: (result, error text, started_at, seconds). Never raises on a
    failing run (the error is returned); KeyboardInterrupt still propagates."""
    from ttrlab.kinds.registry import RUN_KINDS, load_plugins

    load_plugins()
    started_at, t0 = _utcnow(), time.perf_counter()
    try:
        kind = RUN_KINDS.get(kind_name)
        result = kind.run(kind.config_from_dict(config_dict), progress=progress)
        return result, None, started_at, time.perf_counter() - t0
    except Exception as error:  # a failing run is recorded, not fatal
        return None, _error_text(error), started_at, time.perf_counter() - t0


def execute_unit(kind_name: str, config_dicts: list[dict[str, Any]], progress=None) -> list[RunOutcome]:
    """Run one work unit of a kind: one (result, error text, started_at, seconds) per config, in
    order. A unit of one is `execute_one`; a larger unit is one call of the kind's `run_group`,
    and if that raises (or does not return one result dict per config) every run of it fails
    with that error. Never raises on a failing run; KeyboardInterrupt still propagates."""
    if len(config_dicts) == 1:
        return [execute_one(kind_name, config_dicts[0], progress)]
    from ttrlab.kinds.registry import RUN_KINDS, load_plugins

    load_plugins()
    started_at, t0 = _utcnow(), time.perf_counter()
    results: list[dict | None] = [None] * len(config_dicts)
    error = None
    try:
        kind = RUN_KINDS.get(kind_name)
        returned = list(kind.run_group([kind.config_from_dict(d) for d in config_dicts], progress=progress))
        if len(returned) != len(config_dicts) or not all(isinstance(r, dict) for r in returned):
            raise RuntimeError(f"run_group of kind {kind_name!r} must return one result dict per config; "
                               f"it returned {len(returned)} values for {len(config_dicts)} configs")
        results = returned
    except Exception as failure:  # the whole group failed: recorded for each run, not fatal
        error = _error_text(failure)
    # Each run is charged an even share of the group's wall time, so the stored seconds of a
    # sweep's runs still add up to the time its workers spent (a fused run has no time of its own).
    seconds = (time.perf_counter() - t0) / len(config_dicts)
    return [(result, error, started_at, seconds) for result in results]


def _error_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(type(error), error, error.__traceback__))


def _deliver(outcomes: list[Outcome], on_outcome: OnOutcome, monitor: Monitor, worker: Any) -> None:
    """Hand each run's outcome to the driver (which stores it), then show the unit as done."""
    for outcome in outcomes:
        on_outcome(outcome)
    monitor.finish_unit(worker, outcomes)


def _configs(unit: Unit) -> tuple[str, list[dict[str, Any]]]:
    """What a worker needs to run a unit: its kind and its runs' configs (runs of a unit share a kind)."""
    return unit[0].kind, [run.config_dict for run in unit]


def _idle(queue: WorkQueue) -> None:
    """Nothing to start now, but runs held by other drivers may come free: wait a little."""
    time.sleep(min(queue.poll, 0.5))


# ---- inline -----------------------------------------------------------------------------------
@executor("inline")
def run_inline(queue: WorkQueue, on_outcome: OnOutcome, monitor: Monitor, resources: Resources,
               workers: int | None = None, **_: Any) -> None:
    while not queue.exhausted:
        unit = queue.take()
        if unit is None:
            _idle(queue)
            continue
        monitor.start_run(0, unit_label(unit))
        throttle = Throttle()

        def progress(event: str, **info: Any) -> None:
            if throttle(event, info):
                monitor.event(0, event, info)

        outcomes = [Outcome(run, *outcome) for run, outcome in zip(unit, execute_unit(*_configs(unit), progress))]
        _deliver(outcomes, on_outcome, monitor, 0)


# ---- local process pool -------------------------------------------------------------------------
def gpu_slots(gpus: float, visible: Sequence[str]) -> list[str]:
    """The `CUDA_VISIBLE_DEVICES` value of each local worker when every run needs `gpus` GPUs,
    over the `visible` GPU ids; [] when they are too few for one run. Pure.

    A fraction shares a GPU: `0.5` gives two workers per GPU, `0.25` four (`0.3` three: as many
    as fit). A whole number gives each worker that many GPUs of its own: `2` over 0,1,2,3 gives
    "0,1" and "2,3" (an odd GPU left over stays idle). Shared slots go round the GPUs (0, 1, 0,
    1), so the first n slots, which a `--workers n` cap keeps, spread over as many GPUs as they
    can."""
    if gpus <= 0:
        raise ValueError(f"gpu_slots needs gpus > 0, got {gpus}")
    if gpus < 1:
        per_gpu = int(1 / gpus + 1e-9)
        return [gpu for _ in range(per_gpu) for gpu in visible]
    size = math.ceil(gpus - 1e-9)
    return [",".join(visible[i:i + size]) for i in range(0, len(visible) - size + 1, size)]


def visible_gpus() -> tuple[list[str], str]:
    """The GPU ids local workers may use, and where they came from (for messages): the entries
    of CUDA_VISIBLE_DEVICES when it is set (up to the first negative one, as CUDA reads it, so
    "" and "-1" hide every GPU), else torch's device count. Torch is imported only here, and
    this is only called for specs that ask for GPUs."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        entries: list[str] = []
        for entry in (part.strip() for part in value.split(",")):
            if not entry or entry.startswith("-"):
                break
            entries.append(entry)
        return entries, f"CUDA_VISIBLE_DEVICES={value!r}"
    import torch

    count = torch.cuda.device_count()
    return [str(i) for i in range(count)], f"CUDA_VISIBLE_DEVICES unset, torch sees {count}"


def local_slots(resources: Resources, workers: int | None) -> list[str | None]:
    """One entry per local worker: the CUDA_VISIBLE_DEVICES it gets (None: the driver's own).
    CPU runs: `workers`, by default cores // resources.cpus. GPU runs: `gpu_slots` over the
    visible GPUs, capped at `workers`; a UserError when they cannot hold one run."""
    if resources.gpus <= 0:
        return [None] * (workers if workers is not None else max(1, int(available_cpus() // max(resources.cpus, 1e-9))))
    visible, source = visible_gpus()
    slots = gpu_slots(resources.gpus, visible)
    if not slots:
        asked = f"resources.gpus {resources.gpus:g}"
        if not visible:
            raise UserError(f"{asked}: no GPU visible ({source}); run on a GPU machine or set resources.gpus: 0")
        raise UserError(f"{asked}: each run needs {math.ceil(resources.gpus)} GPUs, {len(visible)} visible ({source}); "
                        f"set resources.gpus to at most {len(visible)} or run where more are visible")
    return slots[:workers] if workers is not None else slots


def resident_bytes(pid: int) -> int | None:
    """A process's resident memory (Linux /proc), None where it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def death_reason(exitcode: int | None) -> str:
    """Why a worker process ended, in words: a signal by name (SIGKILL is what the kernel's
    out-of-memory killer sends), else the exit code."""
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        oom = ", e.g. by the kernel's out-of-memory killer" if -exitcode == signal.SIGKILL else ""
        return f"killed by {name}{oom}"
    return f"exit code {exitcode}"


def _check_local(resources: Resources, workers: int | None) -> None:
    local_slots(resources, workers)


def _watch_parent(parent_pid: int) -> None:
    while True:
        if os.getppid() != parent_pid:
            os._exit(3)
        time.sleep(0.5)


def _worker_main(worker_id: int, inbox, events, threads: int, parent_pid: int, cuda_visible: str | None) -> None:
    """A long-lived worker: take (unit index, kind, configs) from `inbox` until None."""
    if cuda_visible is not None:  # first, before any kind imports torch (CUDA reads it once)
        os.environ["CUDA_VISIBLE_DEVICES"] = cuda_visible
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver decides what Ctrl-C, SIGTERM and SIGHUP mean
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    _set_threads(threads)
    while True:
        item = inbox.get()
        if item is None:
            return
        index, kind_name, config_dicts = item
        throttle = Throttle()

        def progress(event: str, **info: Any) -> None:
            if throttle(event, info):
                safe = {k: v for k, v in info.items() if isinstance(v, (int, float, str, type(None)))}
                events.put(("event", worker_id, index, event, safe))

        events.put(("done", worker_id, index, execute_unit(kind_name, config_dicts, progress)))


class _Worker:
    def __init__(self, ctx, worker_id: int, events, threads: int, slot: str | None):
        self.id = worker_id
        self.slot = slot  # its CUDA_VISIBLE_DEVICES (a replacement gets the same)
        self.inbox = ctx.Queue()
        self.process = ctx.Process(target=_worker_main,
                                   args=(worker_id, self.inbox, events, threads, os.getpid(), slot),
                                   name=f"ttrlab-worker-{worker_id}", daemon=True)
        self.process.start()
        self.current: int | None = None  # index of the unit it holds
        self.stopped = False
        self.killed_for: str | None = None  # why the driver killed it (a memory cap), if it did

    def assign(self, index: int, unit: Unit) -> None:
        self.current = index
        self.inbox.put((index, *_configs(unit)))

    def stop(self) -> None:
        self.stopped = True
        self.inbox.put(None)


def _start_resource_tracker() -> None:
    """multiprocessing's resource tracker (a process of its own, in the driver's process group)
    ignores SIGINT and SIGTERM but not SIGHUP; started here with SIGHUP ignored, which it
    inherits, it outlives a closed terminal and cleans up after the driver as it should."""
    from multiprocessing import resource_tracker

    if threading.current_thread() is not threading.main_thread():
        resource_tracker.ensure_running()
        return
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        resource_tracker.ensure_running()
    finally:
        signal.signal(signal.SIGHUP, previous)


@executor("local", check=_check_local)
def run_local(queue: WorkQueue, on_outcome: OnOutcome, monitor: Monitor, resources: Resources,
              workers: int | None = None, **_: Any) -> None:
    if queue.exhausted:
        return
    slots = local_slots(resources, workers)[:queue.units]
    _start_resource_tracker()
    ctx = mp.get_context("spawn")
    events = ctx.Queue()
    pool: list[_Worker] = []
    held: dict[int, Unit] = {}  # units handed to a worker and not delivered yet, by index
    counter = itertools.count()
    next_id = len(slots)

    def feed(worker: _Worker) -> None:
        unit = queue.take()
        if unit is not None:
            index = next(counter)
            held[index] = unit
            worker.assign(index, unit)
            monitor.start_run(worker.id, unit_label(unit))
        elif queue.exhausted:
            worker.stop()

    def receive(message: tuple) -> None:
        kind, worker_id, index = message[:3]
        if kind == "event":
            monitor.event(worker_id, message[3], message[4])
            return
        worker = next((w for w in pool if w.id == worker_id), None)
        if worker is not None:
            worker.current = None
        unit = held.pop(index, None)
        if unit is None:
            return  # already failed as its worker's death
        _deliver([Outcome(run, *outcome) for run, outcome in zip(unit, message[3])], on_outcome, monitor, worker_id)

    try:
        for worker_id, slot in enumerate(slots):
            pool.append(_Worker(ctx, worker_id, events, resources.torch_threads, slot))
        while held or not queue.exhausted:
            for worker in pool:
                if worker.current is None and not worker.stopped:
                    feed(worker)
            try:
                message = events.get(timeout=0.25)
            except queue_module.Empty:
                message = None
            if message is not None:
                receive(message)
            if resources.memory_gb is not None:
                _enforce_memory_cap(pool, resources.memory_gb)
            # a worker that died holding a unit: fail each of its runs, replace the worker
            for i, worker in enumerate(pool):
                if worker.process.is_alive() or worker.current is None or not events.empty():
                    continue  # (a message still queued may be this worker's last result)
                unit = held.pop(worker.current, None)
                worker.current = None
                if unit is None:
                    continue
                error = worker.killed_for or f"worker process died ({death_reason(worker.process.exitcode)}) while running this config"
                if len(unit) > 1:
                    error += f" (one of {len(unit)} runs fused in that worker)"
                _deliver([Outcome(run, None, error, None, None) for run in unit], on_outcome, monitor, worker.id)
                pool[i] = _Worker(ctx, next_id, events, resources.torch_threads, worker.slot)
                next_id += 1
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep every result that has already arrived
        _drain(events, receive)
        raise
    finally:
        _shutdown(pool)


def _drain(events, receive: Callable[[tuple], None]) -> None:
    """Deliver the messages already waiting in `events`: a run that finished just before an
    interrupt is stored, not computed again by the resume. Busy workers are killed after this."""
    while True:
        try:
            message = events.get(timeout=0.05)
        except (queue_module.Empty, OSError, EOFError):
            return
        receive(message)


def _enforce_memory_cap(pool: list[_Worker], memory_gb: float) -> None:
    """Kill a busy worker whose resident memory is above the spec's `resources.memory_gb`; its
    runs are then recorded as failed with that reason (and `--retry-failed` redoes them)."""
    for worker in pool:
        if worker.current is None or worker.killed_for is not None or not worker.process.is_alive():
            continue
        held = resident_bytes(worker.process.pid)
        if held is not None and held > memory_gb * 2**30:
            worker.killed_for = (f"worker killed: its resident memory {held / 2**30:.2f} GB exceeded "
                                 f"resources.memory_gb {memory_gb:g}")
            worker.process.kill()


def _shutdown(pool: list[_Worker]) -> None:
    """Stop idle workers politely; kill busy ones (their runs are not recorded, and they ignore
    SIGTERM, see `_worker_main`)."""
    for worker in pool:
        if worker.process.is_alive():
            if worker.current is None:
                worker.stop()
            else:
                worker.process.kill()
    deadline = time.monotonic() + 5
    for worker in pool:
        worker.process.join(timeout=max(0.1, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join(timeout=2)


# ---- ray ----------------------------------------------------------------------------------------
def forwarded_environment() -> dict[str, str]:
    """The variables of this process's environment a worker elsewhere needs to compute a run as
    it would here: the plugins that register kinds, the import path, every data folder's variable
    (`ttrlab.data.folders`: GLUE, style and instruction data) and the hub's offline switch. Local
    workers inherit the whole environment (spawned processes); Ray workers get these."""
    from ttrlab.data.folders import FOLDER_ENV_VARS

    names = ("TTRLAB_PLUGINS", "PYTHONPATH", *FOLDER_ENV_VARS, "HF_HUB_OFFLINE")
    return {name: os.environ[name] for name in names if name in os.environ}


def _import_ray():
    from ttrlab.core.extras import require

    require("ray", "executor 'ray'")
    import ray

    return ray


def _check_ray(resources: Resources, workers: int | None) -> None:
    _import_ray()


def _ray_task(kind_name: str, config_dicts: list[dict[str, Any]], threads: int):
    # Ray has set CUDA_VISIBLE_DEVICES to the GPUs it gave this task (num_gpus); left as it is.
    _set_threads(threads)
    return execute_unit(kind_name, config_dicts, None)


NODE_LOSS_RETRIES = 3  # a unit whose Ray node dies is started again elsewhere up to this often


@executor("ray", check=_check_ray, on_this_machine=False)
def run_ray(queue: WorkQueue, on_outcome: OnOutcome, monitor: Monitor, resources: Resources,
            workers: int | None = None, ray_address: str | None = None, **_: Any) -> None:
    """Each unit a Ray task needing `resources.cpus` CPUs and `resources.gpus` GPUs, one run's
    needs even for a fused unit (Ray pins the task to its GPUs through CUDA_VISIBLE_DEVICES);
    at most `workers` units in flight (default: as many as the cluster's CPUs allow). Ray reuses its worker processes between tasks, so the
    per-process model cache still saves reloads. A unit whose node dies under it (Ray's
    NodeDiedError) is started again on another node, up to NODE_LOSS_RETRIES times; a unit
    whose own worker process dies fails at once, as in the local pool (Ray's task retries stay
    off, so a run that crashes its worker is not computed four times)."""
    ray = _import_ray()
    if queue.exhausted:
        return
    started_here = False
    if not ray.is_initialized():
        env_vars = forwarded_environment()
        ray.init(address=ray_address, runtime_env={"env_vars": env_vars} if env_vars else None,
                 log_to_driver=False, include_dashboard=False)
        started_here = True
    memory = {"memory": int(resources.memory_gb * 2**30)} if resources.memory_gb is not None else {}
    remote = ray.remote(num_cpus=resources.cpus, num_gpus=resources.gpus, max_retries=0, **memory)(_ray_task)
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1) // max(resources.cpus, 1e-9)))
    in_flight: dict[Any, Unit] = {}
    again: list[Unit] = []  # units whose node died under them: not the runs' fault, run them elsewhere
    node_losses: dict[int, int] = {}

    def collect(ref) -> None:
        unit = in_flight.pop(ref)
        try:
            returned = ray.get(ref)
        except ray.exceptions.NodeDiedError as failure:
            node_losses[id(unit)] = node_losses.get(id(unit), 0) + 1
            if node_losses[id(unit)] <= NODE_LOSS_RETRIES:
                again.append(unit)  # this driver still holds its claims
                return
            returned = [(None, f"ray task failed: {failure}", None, None)] * len(unit)
        except Exception as failure:  # the worker died or Ray lost the task
            returned = [(None, f"ray task failed: {failure}", None, None)] * len(unit)
        outcomes = [Outcome(run, *outcome) for run, outcome in zip(unit, returned)]
        _deliver(outcomes, on_outcome, monitor, f"ray{id(ref)}")

    try:
        while in_flight or again or not queue.exhausted:
            while len(in_flight) < workers:
                unit = again.pop() if again else queue.take()
                if unit is None:
                    break
                ref = remote.remote(*_configs(unit), resources.torch_threads)
                in_flight[ref] = unit
                monitor.start_run(f"ray{id(ref)}", unit_label(unit))
            if not in_flight:
                _idle(queue)
                continue
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=0.5)
            for ref in ready:
                collect(ref)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: keep the results of tasks that have finished
        if in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0)
            for ref in ready:
                collect(ref)
        raise
    finally:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
