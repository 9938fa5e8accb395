"""`workbench worker`: a Dask worker for sweeps, on this machine or on a target device of the catalog."""

from __future__ import annotations

import sys

from .arguments import _positive


def add_worker_parsers(sub) -> None:
    """Register `workbench worker --scheduler ADDRESS [--target ID] [--nthreads N]`."""
    worker = sub.add_parser(
        "worker",
        help="serve a sweep's Dask scheduler as a worker; --target makes it time that catalog target's trials",
    )
    worker.add_argument("--scheduler", required=True, help="the scheduler address, host:port or tcp://host:port")
    worker.add_argument(
        "--target", default=None, help="the catalog target id this machine is (it then receives that target's timings)"
    )
    worker.add_argument("--nthreads", type=_positive, default=1, help="tasks run at once (default 1)")
    worker.add_argument("--name", default=None, help="the worker's name on the dashboard (default: its address)")
    worker.set_defaults(run=_worker)


def worker_resources(target: str | None) -> dict[str, int]:
    """The Dask resources of a sweep worker: one latency slot, and the target's when it is started for one.

    Raises:
        ConfigError: `target` is not an id of the catalog (the message lists the known ids).
    """
    from ..core.advise.catalog import find_target, load_catalog
    from ..core.sweep.transfer import LATENCY_RESOURCE, target_resource

    resources = {LATENCY_RESOURCE: 1}
    if target is not None:
        find_target(load_catalog(), target)
        resources[target_resource(target)] = 1
    return resources


def _worker(args) -> int:
    import asyncio

    from ..core.sweep.dask_engine import check_address, quiet_dask

    address = check_address(args.scheduler)
    resources = worker_resources(args.target)
    quiet_dask()
    print(f"worker for {address}, resources {resources}; Ctrl-C stops it", file=sys.stderr, flush=True)
    try:
        asyncio.run(_serve(address, args.nthreads, resources, args.name))
    except KeyboardInterrupt:
        print("worker stopped", file=sys.stderr)
    return 0


async def _serve(address: str, nthreads: int, resources: dict, name: str | None) -> None:
    """Run one worker until the scheduler goes away or the process is interrupted."""
    from distributed import Worker

    from ..core.errors import ConfigError

    try:
        worker = await Worker(address, nthreads=nthreads, resources=resources, name=name)
    except (OSError, TimeoutError) as exc:
        raise ConfigError(
            f"cannot reach the scheduler at {address} ({exc})",
            "start it first (`dask scheduler`, or a DaskEngine's address) and check host, port and firewall",
        ) from exc
    async with worker:
        await worker.finished()
