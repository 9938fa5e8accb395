"""The advisor: every target of the catalog for a model and the requirements, feasible or not with the reasons,
with estimated latency, memory and cost, ranked; the guide's trade-offs for the environment that wins.

For each target it picks the runtime and precision with the lowest estimated latency among those the target runs,
then checks the requirements in the guide's order: data leaving the site, connectivity, memory, latency, power,
budget. Feasible options rank first, then by cost per month (or by latency: `Requirements.rank_by`); for each
target the most accurate model that meets the requirements (measured mAP50-95, where the ledger has it) is shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .catalog import FORMAT_OF_RUNTIME, Target
from .cpu_peak import cpu_peak_gops
from .estimate import Efficiency, learn, learn_targets, observations, prior
from .profile import ModelProfile
from .requirements import HOURS_PER_MONTH, Connectivity, Requirements

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

# What each runtime computes in, by device kind (the advisor picks among those the target also has a peak for)
RUNTIME_PRECISIONS = {
    "openvino": {"cpu": ("fp32", "bf16", "int8"), "gpu": ("fp32", "fp16", "int8"), "npu": ("fp16", "int8")},
    "onnxruntime": {"cpu": ("fp32", "int8"), "gpu": ("fp32", "fp16")},
    "tensorrt": {"gpu": ("fp32", "fp16", "int8")},
    "litert": {"cpu": ("fp32", "int8"), "gpu": ("fp32", "fp16"), "npu": ("fp16", "int8"), "tpu": ("int8",)},
    "pytorch": {"cpu": ("fp32", "bf16"), "gpu": ("fp32", "fp16")},
    "torchscript": {"cpu": ("fp32",), "gpu": ("fp32", "fp16")},
}
_ENVIRONMENT_WORDS = {"cloud": "in the cloud", "edge": "on the edge", "on_prem": "on premises"}
LAN = {"rtt_ms": 1.0, "mbps": 1000.0}  # sites to an on-premises server
TRADE_OFFS = {
    "cloud": "scales with demand and is paid per hour of use; every image crosses the network (the round trip and "
    "the upload are in the latency), leaves the site and needs the connection to be up",
    "edge": "the lowest latency, images never leave the device and it works offline; little compute, memory and "
    "power per device, and a fleet of devices to update and watch",
    "on_prem": "full control on your own machines (Docker, Kubernetes), images stay on site and it works without "
    "the internet; buying, powering, securing and updating the machines is yours",
}


@dataclass(frozen=True)
class Option:
    """One target for one model: what to deploy, what it is estimated to give and cost, and whether it fits."""

    target: Target
    profile: ModelProfile
    runtime: str
    precision: str
    efficiency: Efficiency
    compute_p50_ms: float
    compute_p99_ms: float
    network_ms: float  # round trip and upload at p99 (0 on the edge)
    memory_mb: float
    devices: int  # devices or instances for the whole fleet
    monthly_usd: float
    reasons: tuple[str, ...] = ()  # why it does not meet the requirements, in words (empty: it does)
    blockers: tuple[str, ...] = ()  # the same as kinds: privacy, connectivity, memory, latency, power, throughput,
    # budget
    notes: tuple[str, ...] = field(default=())

    @property
    def feasible(self) -> bool:
        return not self.reasons

    @property
    def p99_ms(self) -> float:
        return self.compute_p99_ms + self.network_ms

    @property
    def format(self) -> str:
        return FORMAT_OF_RUNTIME[self.runtime]

    def per_million_usd(self, requirements: Requirements) -> float:
        return self.monthly_usd / (requirements.images_per_month / 1e6)

    def row(self, requirements: Requirements) -> dict:
        """A flat row for tables and charts."""
        return {
            "target": self.target.id,
            "name": self.target.name,
            "environment": self.target.environment,
            "device": self.target.device,
            "model": self.profile.name,
            "variant_id": self.profile.variant_id,
            "format": self.format,
            "runtime": self.runtime,
            "precision": self.precision,
            "imgsz": self.profile.imgsz,
            "model_mb": round(self.profile.weights_mb(self.precision), 2),
            "map50_95": self.profile.map50_95,
            "map_set": self.profile.map_set,
            "p50_ms": round(self.compute_p50_ms + self.network_ms / 1.5, 2),
            "p99_ms": round(self.p99_ms, 2),
            "network_ms": round(self.network_ms, 2),
            "memory_mb": round(self.memory_mb, 1),
            "devices": self.devices,
            "monthly_usd": round(self.monthly_usd, 2),
            "per_million_usd": round(self.per_million_usd(requirements), 3),
            "feasible": self.feasible,
            "reasons": "; ".join(self.reasons),
            "estimate_basis": self.efficiency.basis,
            "notes": "; ".join(self.notes),
        }


@dataclass(frozen=True)
class Advice:
    """The ranked options (the best model for each target) and the words for the winner."""

    requirements: Requirements
    options: tuple[Option, ...]  # one a target, ranked
    considered: tuple[Option, ...]  # every target x model

    @property
    def best(self) -> Option | None:
        return self.options[0] if self.options and self.options[0].feasible else None

    def rows(self) -> list[dict]:
        return [{"rank": i + 1, **o.row(self.requirements)} for i, o in enumerate(self.options)]

    def summary(self) -> str:
        """The recommendation in plain words, with the trade-offs of its environment."""
        best, need = self.best, self.requirements
        if best is None:
            common = _most_common_reason(self.options)
            return f"No target meets these requirements. The most common reason: {common}. Relax one and look again."
        return (
            f"Best: {best.target.name}, {_ENVIRONMENT_WORDS[best.target.environment]}. "
            f"{best.profile.name} as {best.format} {best.precision} at {best.profile.imgsz} px on {best.runtime}, "
            f"p99 about {best.p99_ms:.1f} ms of the {need.latency_p99_ms:g} ms budget, about "
            f"${best.monthly_usd:,.0f} a month for {best.devices} device{'s' * (best.devices != 1)} "
            f"(${best.per_million_usd(need):,.2f} per million images). "
            f"{best.target.environment.replace('_', '-').capitalize()}: {TRADE_OFFS[best.target.environment]}. "
            f"Estimates: {best.efficiency.basis}."
        )


def advise(profiles: list[ModelProfile], requirements: Requirements, targets: list[Target], learned=None) -> Advice:
    """Rank `targets` for the models in `profiles` (profiled at `requirements.imgsz`).

    Args:
        learned: fitted efficiencies by (runtime, precision) from this machine (`estimate.learn`); priors where
            one is missing.
    """
    learned = learned or {}
    considered = [_option(t, p, requirements, learned) for t in targets for p in profiles]
    considered = [o for o in considered if o is not None]
    best_per_target = {}
    for option in sorted(considered, key=_model_order):
        best_per_target.setdefault(option.target.id, option)
    ranked = sorted(best_per_target.values(), key=lambda o: _rank_order(o, requirements.rank_by))
    return Advice(requirements, tuple(ranked), tuple(considered))


def _model_order(option: Option):
    return (not option.feasible, -(option.profile.map50_95 or 0.0), option.monthly_usd, option.p99_ms)


def _rank_order(option: Option, rank_by: str):
    first, second = (option.monthly_usd, option.p99_ms) if rank_by == "cost" else (option.p99_ms, option.monthly_usd)
    return (not option.feasible, len(option.reasons), first, second)


def _option(target: Target, profile: ModelProfile, need: Requirements, learned) -> Option | None:
    choices = [
        (runtime, precision)
        for runtime in target.runtimes
        for precision in RUNTIME_PRECISIONS.get(runtime, {}).get(target.device, ())
        if target.peak_gops(precision)
    ]
    ran = [(r, p) for (t, r, p) in (k for k in learned if len(k) == 3) if t == target.id and (r, p) not in choices]
    choices += ran  # what the target's own worker ran, even where the catalog does not list that runtime
    if not choices:
        return None
    timed = [(_efficiency(target, r, p, learned), r, p) for r, p in choices]
    efficiency, runtime, precision = min(timed, key=lambda t: t[0].p50_ms(profile.gflops, target.peak_gops(t[2])))
    p50 = efficiency.p50_ms(profile.gflops, target.peak_gops(precision))
    p99 = p50 * efficiency.tail
    network = _network_ms(target, need)
    devices = _devices(target, need, p50)
    monthly, notes = _monthly_usd(target, need, devices)
    memory = profile.memory_mb(precision, runtime)
    option = Option(target, profile, runtime, precision, efficiency, p50, p99, network, memory, devices, monthly)
    found = _reasons(option, need)
    if precision == "int8":
        notes = (*notes, "int8 needs calibration images: measure the mAP drop (chapter 04)")
    blockers, reasons = tuple(k for k, _ in found), tuple(text for _, text in found)
    return Option(**{**option.__dict__, "reasons": reasons, "blockers": blockers, "notes": notes})


def _efficiency(target: Target, runtime: str, precision: str, learned) -> Efficiency:
    """The target's own fit where its worker measured this runtime and precision; else this machine's fitted
    efficiency where the target is a CPU with the same kind of unit for the precision (the same peak per fp32
    FLOP: AMX int8 is not VNNI int8) running the same runtime; else the prior."""
    measured = learned.get((target.id, runtime, precision))
    if measured is not None:
        return measured
    mine = learned.get((runtime, precision))
    if mine is None or target.device != "cpu":
        return prior(runtime, precision, target.device)
    if target.probed:
        return mine
    if not _same_units(target, precision):
        basis = f"prior (this CPU's {precision} unit differs from the one {mine.basis.removeprefix('learned ')})"
        return replace(prior(runtime, precision, "cpu"), basis=basis)
    basis = f"{mine.basis}, carried to this CPU at its own peak"
    return Efficiency(runtime, precision, mine.efficiency, mine.overhead_ms, mine.tail, mine.rows, basis)


def _same_units(target: Target, precision: str) -> bool:
    """Whether the target's peak at `precision` relative to its fp32 peak matches this machine's (within 10%)."""
    here, here_fp32 = cpu_peak_gops(precision, 1), cpu_peak_gops("fp32", 1)
    there, there_fp32 = target.peak_gops(precision), target.peak_gops("fp32")
    if precision == "fp32":
        return True
    if not (here and here_fp32 and there and there_fp32):
        return False
    return abs((there / there_fp32) / (here[0] / here_fp32[0]) - 1) <= 0.1


def _network_ms(target: Target, need: Requirements) -> float:
    """Round trip (at p99: 1.5x) and upload of one image; nothing on the edge, the LAN on premises."""
    if target.environment == "edge":
        return 0.0
    rtt, mbps = (need.network_rtt_ms, need.uplink_mbps) if target.environment == "cloud" else LAN.values()
    return 1.5 * rtt + need.encoded_image_kb * 8 / mbps


def _devices(target: Target, need: Requirements, p50_ms: float) -> int:
    """Devices for the fleet at the peak rate: one or more at every site on the edge, a shared pool otherwise."""
    per_device = target.concurrency * 1000 / p50_ms
    if target.environment == "edge":
        return need.fleet_size * math.ceil(need.peak_images_per_s / per_device)
    return math.ceil(need.peak_images_per_s * need.fleet_size / per_device)


def _monthly_usd(target: Target, need: Requirements, devices: int) -> tuple[float, tuple[str, ...]]:
    if target.environment == "cloud":
        return devices * target.price.value * HOURS_PER_MONTH, ("sized for the peak around the clock",)
    notes = [f"hardware paid off over {need.amortize_months} months"]
    power = 0.0
    if target.power is None:
        notes.append("power not known: not in the cost")
    else:
        power = target.power.value / 1000 * HOURS_PER_MONTH * need.electricity_usd_per_kwh
    return devices * (target.price.value / need.amortize_months + power), tuple(notes)


def _reasons(option: Option, need: Requirements) -> list[tuple[str, str]]:
    """(kind, words) for every requirement the option misses."""
    target, reasons = option.target, []
    if target.environment == "cloud" and not need.images_may_leave_site:
        reasons.append(("privacy", "images may not leave the site"))
    if target.environment == "cloud" and need.connectivity is not Connectivity.ONLINE:
        reasons.append(("connectivity", f"a cloud service needs the network, which is {need.connectivity.value}"))
    memory_mb = target.memory.value * 1000
    if option.memory_mb > memory_mb:
        reasons.append(("memory", f"needs about {option.memory_mb:,.0f} MB, has {memory_mb:,.0f} MB"))
    if option.p99_ms > need.latency_p99_ms:
        reasons.append(("latency", f"p99 about {option.p99_ms:.1f} ms exceeds the {need.latency_p99_ms:g} ms budget"))
    if need.power_envelope_w is not None and target.environment != "cloud" and target.power is not None:
        if target.power.value > need.power_envelope_w:
            reasons.append(
                ("power", f"draws about {target.power.value:g} W, the envelope is {need.power_envelope_w:g} W")
            )
    if target.probed and option.devices > 1:
        reasons.append(("throughput", f"needs {option.devices} machines like this one at the peak rate; it is one"))
    if option.monthly_usd > need.monthly_budget_usd:
        reasons.append(
            ("budget", f"about ${option.monthly_usd:,.0f} a month exceeds the ${need.monthly_budget_usd:,.0f} budget")
        )
    return reasons


BLOCKER_WORDS = {
    "privacy": "images may not leave the site",
    "connectivity": "the network is not always up",
    "memory": "the model does not fit in memory",
    "latency": "the latency budget",
    "power": "the power envelope",
    "budget": "the monthly budget",
    "throughput": "the peak rate",
}


def _most_common_reason(options) -> str:
    from collections import Counter

    kinds = Counter(kind for o in options for kind in o.blockers)
    return BLOCKER_WORDS[kinds.most_common(1)[0][0]] if kinds else "none recorded"


def learned_here(workspace: Workspace, targets=None) -> dict:
    """This machine's fitted efficiencies from the workspace's latency rows, keyed (runtime, precision), and the
    targets' own, keyed (target id, runtime, precision), from rows their sweep workers timed (empty without rows)."""
    from .catalog import load_catalog

    targets = load_catalog() if targets is None else targets
    return {**learn(observations(workspace)), **learn_targets(workspace, targets)}


def advise_workspace(
    workspace: Workspace,
    requirements: Requirements,
    *,
    variant_ids: list[int] | None = None,
    targets: list[Target] | None = None,
    evaluation_set=None,
) -> Advice:
    """`advise` for the workspace's models (every PyTorch variant unless `variant_ids` names some), profiled at
    the requirements' imgsz, with the efficiencies learned from the workspace's latency rows on this machine.

    The models' mAP50-95 are all from one evaluation set: `evaluation_set`, else the one most of them were measured
    on; a model not measured there has none (`map_set` says so).

    Raises:
        ConfigError: the workspace holds no PyTorch model, or a variant id is not in it.
    """
    from ..errors import ConfigError
    from ..store.evaluation_sets import choose_set, workspace_sets
    from .catalog import load_catalog
    from .profile import profile_variant, pytorch_variants

    ids = list(variant_ids) if variant_ids else pytorch_variants(workspace)
    if not ids:
        raise ConfigError(
            f"the workspace {workspace.root} holds no PyTorch model to advise on",
            "run `workbench demo` (or record a model) first, or pass a model",
        )
    chosen = choose_set(workspace_sets(workspace, ids), evaluation_set)  # every model's mAP on the same images
    profiles = [profile_variant(workspace, i, requirements.imgsz, chosen) for i in ids]
    targets = load_catalog() if targets is None else targets
    return advise(profiles, requirements, targets, learned_here(workspace, targets))


def advise_model(
    spec, requirements: Requirements, *, targets=None, trust: bool = False, workspace: Workspace | None = None
) -> Advice:
    """`advise` for one model given as 'demo', 'student' or a .pt path (loaded safely unless `trust`), with the
    efficiencies learned from `workspace`'s rows where one is given (priors otherwise). Writes nothing."""
    from ..models.sources import load_model
    from .catalog import load_catalog
    from .profile import profile_net

    model = load_model(spec, trust=trust)
    profile = profile_net(
        model.model, requirements.imgsz, str(spec) if spec in ("demo", "student") else model_name(spec)
    )
    targets = load_catalog() if targets is None else targets
    learned = learned_here(workspace, targets) if workspace is not None else {}
    return advise([profile], requirements, targets, learned)


def model_name(spec) -> str:
    from pathlib import Path

    return Path(str(spec)).stem
