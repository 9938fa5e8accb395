"""The Dask distributed sweep engine: trials on a local cluster or any scheduler, latency serialized per machine.

Training and accuracy tasks run in parallel on any worker; a trial's latency is a second task that needs the
`latency` resource (or `target:<id>` for a catalog target) and takes a machine-wide Lock while it times. Artifacts
and the dataset travel as bytes (`transfer`), so no file system is shared. Only this client writes the ledger,
one trial at a time, so a lost worker loses only its task (Dask runs it again elsewhere).
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..progress import ProgressFn, emit
from . import transfer
from .trials import TrialResult, TrialSpec, read_set, read_values, record_trial

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

POLL_S = 0.25  # how often the loop looks at cancel and time-outs while it waits for tasks
_DASK_LOGGERS = ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny", "bokeh")


def check_address(address: str) -> str:
    """A scheduler address as Dask takes it ('tcp://host:port'), or a ConfigError that says what is wrong."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    text = str(address or "").strip()
    try:
        scheme, location = parse_address(text if "://" in text else f"tcp://{text}")
        host, port = parse_host_port(location)
    except (ValueError, TypeError):
        host, port = "", None
    if not host or port is None or not 0 < int(port) < 65536:
        raise ConfigError(
            f"{address!r} is not a scheduler address",
            "give host:port or tcp://host:port, as `dask scheduler` prints it (e.g. tcp://10.0.0.5:8786)",
        )
    return f"{scheme}://{host}:{port}"


def quiet_dask(level: int = logging.ERROR) -> None:
    """Keep Dask's own log lines (worker start-up, lost connections on close) out of notebooks and tests."""
    for name in _DASK_LOGGERS:
        logging.getLogger(name).setLevel(level)


@dataclass
class _Job:
    kind: str  # "trial" or "latency"
    spec: TrialSpec
    submitted: float
    trial: object = None  # latency jobs: the trial's future (its payload stays on the cluster)
    imported: tuple = ()  # latency jobs: (variant ids, measurement ids, final id, payload summary)


class DaskEngine:
    """Runs sweep trials on Dask distributed: a LocalCluster of this machine by default, or any scheduler.

    Args:
        scheduler: None starts a LocalCluster on 127.0.0.1 (closed with the engine); else a scheduler address.
        workers, threads_per_worker: the LocalCluster's size (ignored with a scheduler).
        retries: how often a task that raised is run again (a lost worker's task is rescheduled by Dask anyway).
        timeout_s: a task not finished this long after it was submitted is cancelled and its trial fails.
    """

    def __init__(
        self,
        scheduler: str | None = None,
        *,
        workers: int = 2,
        threads_per_worker: int = 1,
        retries: int = 2,
        timeout_s: float = 3600.0,
        quiet: bool = True,
    ):
        for name, value in (("workers", workers), ("threads_per_worker", threads_per_worker)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}", f"use e.g. {name}=2")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigError(f"retries must be a whole number >= 0, got {retries!r}", "use e.g. retries=2")
        if not timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s!r}", "use e.g. timeout_s=3600")
        address = None if scheduler is None else check_address(scheduler)
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise ConfigError("Dask distributed is not installed", "pip install 'deploy-workbench[sweep]'") from exc
        if quiet:
            quiet_dask()
        self.retries, self.timeout_s = retries, timeout_s
        self._cancel, self._lock = threading.Event(), threading.Lock()
        self._pending: dict = {}
        self._token: str | None = None  # names the current run's keys and attempt counters
        self._keys: set = set()  # (number, stage) of the current run's trials
        self.cluster = None
        if address is None:
            self.cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=threads_per_worker,
                processes=True,
                host="127.0.0.1",
                dashboard_address=_dashboard_address(),
                resources={transfer.LATENCY_RESOURCE: 1},
                silence_logs=logging.ERROR if quiet else logging.WARNING,
            )
            self.client = Client(self.cluster, set_as_default=False)
        else:
            self.client = Client(address, set_as_default=False, timeout="30s")

    # ---------------------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> DaskEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect, and stop the LocalCluster when this engine started it."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    @property
    def parallelism(self) -> int:
        """How many workers the scheduler has now."""
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    @property
    def dashboard_link(self) -> str | None:
        """The Dask dashboard's address, or None when it is not running (it needs bokeh)."""
        if self.cluster is not None and _dashboard_address() is None:
            return None  # without bokeh the scheduler's HTTP server still registers as "dashboard"; /status is a 404
        services = self.client.scheduler_info(n_workers=0).get("services", {})
        return self.client.dashboard_link if "dashboard" in services else None

    def attempts(self, spec: TrialSpec) -> int:
        """How many times a trial of the current run has started on a worker (0: not yet)."""
        from distributed import Variable

        token = self._token
        if token is None or not any((spec.number, spec.stage) == k for k in self._keys):
            return 0
        return int(Variable(_counter(token, spec), client=self.client).get(timeout=5))

    def cancel(self) -> None:
        """Cancel every trial not yet imported; `run` then returns once its in-flight latency tasks are in."""
        self._cancel.set()
        with self._lock:
            trials = [f for f, job in self._pending.items() if job.kind == "trial"]
        if trials:
            self.client.cancel(trials, force=True)

    # ---------------------------------------------------------------------------------------------- running

    def run(
        self,
        workspace: Workspace,
        model_id: int,
        data_yaml,
        trials: Sequence[TrialSpec],
        *,
        progress: ProgressFn | None = None,
    ) -> Iterator[TrialResult]:
        """Run `trials` from variant `model_id` on the cluster; yields each trial once it is fully in the ledger.

        Raises:
            ConfigError: the trials, the model or the dataset cannot be sent (before anything is submitted).
            Cancelled: from `progress`; trials not yet imported are cancelled, imported ones stay.
        """
        from distributed import Variable

        trials = _check_trials(trials)
        parent, dataset = transfer.pack_variant(workspace, model_id), transfer.pack_dataset(data_yaml)
        self._cancel.clear()
        token = uuid.uuid4().hex[:12]
        for spec in trials:
            Variable(_counter(token, spec), client=self.client).set(0)
        self._keys = {(t.number, t.stage) for t in trials}
        self._token = token  # after the counters exist: `attempts` never waits for one
        parent_f, dataset_f = self.client.scatter([parent, dataset], broadcast=True, hash=False)
        for spec in trials:
            future = self.client.submit(
                transfer.run_trial_task, spec, parent_f, dataset_f, _counter(token, spec),
                key=f"trial-{spec.number}-{spec.stage}-{token}", retries=self.retries, pure=False,
            )  # fmt: skip
            self._track(future, _Job("trial", spec, time.monotonic()))
        done, total = 0, len(trials)
        emit(progress, "sweep", 0, total, f"{total} trials on {self.parallelism} workers")
        try:
            while self._pending:
                for result in self._step(workspace, model_id, data_yaml, parent_f, dataset_f):
                    done += 1
                    record_trial(workspace, _spec_of(trials, result), result)
                    emit(progress, "sweep", done, total, f"trial {result.number}: {result.error or 'done'}")
                    yield result
        except BaseException:
            self.cancel()
            raise
        finally:
            self._forget(token, trials)
        emit(progress, "sweep", done, total, "cancelled" if self._cancel.is_set() else "done")

    def _step(self, workspace: Workspace, model_id, data_yaml, parent_f, dataset_f) -> Iterator[TrialResult]:
        """Wait a moment for tasks; import what finished, submit latency tasks, fail what timed out."""
        with self._lock:
            futures = list(self._pending)
        finished = [f for f in futures if f.done()]
        if not finished:
            time.sleep(POLL_S)  # futures' states are kept up to date by the client's own thread
        now = time.monotonic()
        for future in futures:
            job = self._pending.get(future)
            if job is None:
                continue
            if future in finished or future.cancelled():
                self._untrack(future)
                result = self._finish(job, future, workspace, model_id, data_yaml, parent_f, dataset_f)
                if result is not None:
                    yield result
            elif now - job.submitted > self.timeout_s:
                self._untrack(future)
                future.cancel()
                yield _failed(job, f"timed out after {self.timeout_s:.0f} s")

    def _finish(
        self, job, future, workspace: Workspace, model_id, data_yaml, parent_f, dataset_f
    ) -> TrialResult | None:
        if future.cancelled() or (self._cancel.is_set() and job.kind == "trial"):
            return None  # cancelled: nothing of it was imported
        if future.status == "error":
            return _failed(job, f"{type(future.exception()).__name__}: {future.exception()}", self.retries + 1)
        if job.kind == "latency":
            return self._finish_latency(job, future.result(), workspace)
        payload = future.result()
        variant_ids, measured, final = import_trial(workspace, model_id, payload, data_yaml)
        summary = {k: payload[k] for k in ("worker", "attempts", "seconds", "error")}
        if payload["error"] is None and job.spec.latency is not None and final is not None:
            resources = {_latency_resource(job.spec): 1}
            latency = self.client.submit(
                transfer.time_trial_task, job.spec, future, parent_f, dataset_f,
                key=f"latency-{future.key}", resources=resources, retries=self.retries, pure=False,
            )  # fmt: skip
            self._track(
                latency, _Job("latency", job.spec, time.monotonic(), future, (variant_ids, measured, final, summary))
            )
            return None
        return _result(workspace, job.spec, variant_ids, measured, final, summary)

    def _finish_latency(self, job, payload: dict, workspace: Workspace) -> TrialResult:
        variant_ids, measured, final, summary = job.imported
        for m in payload["measurements"]:
            measured = [*measured, _add_measurement(workspace, final, m, payload["fingerprint"])]
        return _result(workspace, job.spec, variant_ids, measured, final, summary)

    def _track(self, future, job: _Job) -> None:
        with self._lock:
            self._pending[future] = job

    def _untrack(self, future) -> None:
        with self._lock:
            self._pending.pop(future, None)

    def _forget(self, token: str, trials: list[TrialSpec]) -> None:
        """Drop what this run left on the cluster: its futures and its attempt counters."""
        from distributed import Variable

        with self._lock:
            leftover, self._pending, self._token = list(self._pending), {}, None
        if leftover:
            self.client.cancel(leftover, force=True)
        for spec in trials:
            Variable(_counter(token, spec), client=self.client).delete()


# -------------------------------------------------------------------------------------------------- importing


def import_trial(
    workspace: Workspace, model_id: int, payload: dict, data_yaml
) -> tuple[tuple[int, ...], list[int], int | None]:
    """Record a worker's trial in `workspace` in one go: its variants (parents first) under `model_id`, then its
    measurements with the worker's fingerprint. Returns the variant ids, measurement ids and the final id.

    Every artifact is unpacked and checked before anything is written. If recording fails part-way, the
    measurements recorded are removed again; variants already recorded stay (without measurements), and an
    identical import later keeps their ids (the ledger records an artifact from the same parent and step once).
    """
    with tempfile.TemporaryDirectory(prefix="workbench-import-") as tmp:
        paths = {v["id"]: transfer.unpack(v["tar"], Path(tmp) / str(v["id"])) for v in payload["variants"]}
        ids, measured = {payload["root"]: model_id}, []
        try:
            for packed in payload["variants"]:
                ids[packed["id"]] = workspace.add_artifact(
                    paths[packed["id"]], packed["name"], step=packed["step"], params=_remap(packed["params"], ids),
                    parent_id=ids[packed["parent"]], format=packed["format"],
                )  # fmt: skip
            for m in payload["measurements"]:
                if "data_yaml" in m["context"]:  # the worker's unpacked copy: name the client's dataset instead
                    m = {**m, "context": {**m["context"], "data_yaml": str(data_yaml)}}
                measured.append(_add_measurement(workspace, ids[m["variant"]], m, payload["fingerprint"]))
        except BaseException:
            workspace.ledger.remove_measurements(measured)
            raise
    variant_ids = tuple(ids[v["id"]] for v in payload["variants"])
    final = ids.get(payload.get("final")) if payload.get("final") is not None else None
    return variant_ids, measured, final if final is not None else (variant_ids[-1] if variant_ids else None)


def _add_measurement(workspace: Workspace, variant_id: int, m: dict, worker_fingerprint: dict) -> int:
    return workspace.ledger.add_measurement(
        variant_id, m["kind"], m["metrics"], m["context"], fingerprint=worker_fingerprint
    )


def _remap(params: dict, ids: dict) -> dict:
    """A step's parameters with the worker's variant ids (a distillation's teacher) turned into the client's."""
    teacher = params.get("teacher_id")
    return {**params, "teacher_id": ids.get(teacher, teacher)} if teacher is not None else params


# -------------------------------------------------------------------------------------------------- helpers


def _dashboard_address() -> str | None:
    """Any free port on 127.0.0.1 (this machine only) when bokeh is there to serve the dashboard, else none."""
    import importlib.util

    return "127.0.0.1:0" if importlib.util.find_spec("bokeh") else None


def _latency_resource(spec: TrialSpec) -> str:
    return transfer.target_resource(spec.target) if spec.target else transfer.LATENCY_RESOURCE


def _check_trials(trials: Sequence[TrialSpec]) -> list[TrialSpec]:
    trials = list(trials)
    if not all(isinstance(t, TrialSpec) for t in trials):
        raise ConfigError("trials must be TrialSpec objects", "build them with the sweep's search space")
    keys = [(t.number, t.stage) for t in trials]
    if len(set(keys)) != len(keys):
        raise ConfigError("two trials share a number and stage", "number the trials of one run uniquely")
    return trials


def _counter(token: str, spec: TrialSpec) -> str:
    """The name of the Variable that counts a trial's attempts."""
    return f"workbench-{token}-{spec.number}-{spec.stage}"


def _spec_of(trials: list[TrialSpec], result: TrialResult) -> TrialSpec:
    return next(t for t in trials if (t.number, t.stage) == (result.number, result.stage))


def _result(workspace: Workspace, spec, variant_ids, measured, final, summary) -> TrialResult:
    values, error = read_values(workspace, final, measured) if final is not None else ({}, None)
    error = summary["error"] or error
    return TrialResult(
        spec.number, spec.stage, final, variant_ids, {} if error else values,
        summary["worker"], error, summary["attempts"], summary["seconds"], read_set(workspace, measured),
    )  # fmt: skip


def _failed(job: _Job, error: str, attempts: int = 1) -> TrialResult:
    if job.kind == "latency":  # the trial's variants are in; only its timing failed
        variant_ids, _, final, summary = job.imported
        return TrialResult(job.spec.number, job.spec.stage, final, variant_ids, {}, summary["worker"], error,
                           summary["attempts"], summary["seconds"])  # fmt: skip
    return TrialResult(job.spec.number, job.spec.stage, None, (), {}, None, error, attempts)


__all__ = ["DaskEngine", "check_address", "import_trial", "quiet_dask"]
