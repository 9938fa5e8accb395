"""What a deployment must meet: the requirements the advisor ranks targets against.

Throughput is per site (a camera, a line, a store); `fleet_size` is how many sites there are. Edge targets put one
device (or more, if one is too slow) at every site; cloud and on-premises targets serve all sites from a pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ..errors import ConfigError, check_imgsz
from ..options import build

HOURS_PER_MONTH = 730.0  # 8,760 h / 12
RANK_BY = ("cost", "latency")
RANK_BY_FIX = "cost: the cheapest target that meets the requirements first; latency: the fastest within them"


class Connectivity(StrEnum):
    """How the sites reach the internet."""

    ONLINE = "online"  # always
    INTERMITTENT = "intermittent"  # drops out: a cloud service would stall
    OFFLINE = "offline"  # never: nothing may depend on the internet


@dataclass(frozen=True)
class Requirements:
    """A deployment's requirements; every field is checked on construction (a clear ConfigError names it)."""

    latency_p99_ms: float = 50.0  # end-to-end budget per image at the 99th percentile, network included
    mean_images_per_s: float = 5.0  # per site, averaged over the day
    peak_images_per_s: float = 10.0  # per site, the busiest minute: what capacity must be sized for
    imgsz: int = 640
    connectivity: Connectivity = Connectivity.ONLINE
    images_may_leave_site: bool = True  # False: privacy or contract keeps images on the site (no cloud)
    fleet_size: int = 1  # sites
    monthly_budget_usd: float = 1_000.0  # for the whole fleet: hardware amortised, power, cloud hours
    power_envelope_w: float | None = None  # per device on a site; None: no limit
    network_rtt_ms: float = 40.0  # site to cloud region round trip
    uplink_mbps: float = 20.0  # site upload bandwidth to the cloud
    image_kb: float | None = None  # one encoded image; None: estimated as a JPEG at imgsz (about 10:1)
    amortize_months: int = 36  # hardware bought once is paid off over this many months
    electricity_usd_per_kwh: float = 0.20
    rank_by: str = "cost"  # among feasible targets: "cost" (the cheapest first) or "latency" (the fastest first)

    def __post_init__(self):
        object.__setattr__(self, "connectivity", _connectivity(self.connectivity))
        check_imgsz(self.imgsz)
        for name in ("latency_p99_ms", "mean_images_per_s", "peak_images_per_s", "uplink_mbps"):
            _positive(name, getattr(self, name))
        for name in ("monthly_budget_usd", "network_rtt_ms", "electricity_usd_per_kwh"):
            _positive(name, getattr(self, name), zero=True)
        for name in ("power_envelope_w", "image_kb"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        for name in ("fleet_size", "amortize_months"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}", f"set {name} to 1 or more")
        if self.rank_by not in RANK_BY:
            raise ConfigError(f"rank_by must be one of {', '.join(RANK_BY)}, got {self.rank_by!r}", RANK_BY_FIX)
        if self.peak_images_per_s < self.mean_images_per_s:
            raise ConfigError(
                f"peak_images_per_s ({self.peak_images_per_s}) is below mean_images_per_s ({self.mean_images_per_s})",
                "the peak is the busiest rate: at least the mean",
            )

    @classmethod
    def from_dict(cls, data: dict | None, *, source: str = "requirements") -> Requirements:
        """Requirements from a mapping (YAML, JSON, a form); unknown keys and wrong types are named."""
        return build(cls, data, source)

    @property
    def encoded_image_kb(self) -> float:
        """One image as sent over the network: `image_kb`, or a JPEG at imgsz (3 bytes a pixel, about 10:1)."""
        return self.image_kb if self.image_kb is not None else self.imgsz * self.imgsz * 3 / 10 / 1000

    @property
    def images_per_month(self) -> float:
        """Images the whole fleet sends in a month at the mean rate."""
        return self.mean_images_per_s * self.fleet_size * 3600 * HOURS_PER_MONTH


def _connectivity(value) -> Connectivity:
    try:
        return Connectivity(value)
    except ValueError:
        raise ConfigError(
            f"connectivity must be one of {', '.join(c.value for c in Connectivity)}, got {value!r}",
            "online: always connected; intermittent: drops out; offline: never connected",
        ) from None


def _positive(name: str, value, *, zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ConfigError(f"{name} must be a number, got {value!r}", f"set {name} to a number")
    if value < 0 or (value == 0 and not zero):
        raise ConfigError(
            f"{name} must be {'0 or more' if zero else 'more than 0'}, got {value}", f"set {name} to a positive value"
        )
