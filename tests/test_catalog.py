"""The deployment target catalog: the shipped targets pass the schema and look plausible, user files extend and
override it, every broken entry is a ConfigError naming file, target and field, and the probe of this machine
derives its bf16/int8 peaks from the CPU flags."""

from __future__ import annotations

import re
import textwrap

import pytest

from workbench.core import environment
from workbench.core.advise import catalog
from workbench.core.advise.catalog import (
    ENVIRONMENTS,
    PRECISIONS,
    RUNTIMES,
    Target,
    find_target,
    load_catalog,
    load_file,
    this_machine,
)
from workbench.core.errors import ConfigError

CANONICAL = {"fp32": "GFLOP/s", "fp16": "GFLOP/s", "bf16": "GFLOP/s", "int8": "GOP/s"}


@pytest.fixture(scope="module")
def shipped() -> list[Target]:
    return load_catalog(probe=False)


@pytest.fixture(autouse=True)
def no_user_files(monkeypatch):
    monkeypatch.delenv(catalog.ENV_VARIABLE, raising=False)


def entry(target_id: str = "my-box", **fields) -> dict:
    """A valid edge target as plain data; `fields` replace (or, set to ..., drop) its fields."""
    data = {
        "id": target_id,
        "name": "My box",
        "environment": "edge",
        "provider": "local",
        "device": "cpu",
        "peak": {
            "fp32": {"value": 0.2, "unit": "TFLOP/s", "source": "derived: test"},
            "int8": {"value": 2, "unit": "TOPS", "source": "derived: test"},
        },
        "memory": {"value": 4, "unit": "GiB", "source": "test"},
        "power": {"value": 10, "unit": "W", "source": "test"},
        "price": {"value": 100, "unit": "USD", "source": "test"},
        "price_date": "2025-01",
        "runtimes": ["onnxruntime"],
    }
    data.update(fields)
    return {k: v for k, v in data.items() if v is not ...}


def write(path, *entries, raw: str | None = None):
    import yaml

    path.write_text(raw if raw is not None else yaml.safe_dump({"version": 1, "targets": list(entries)}))
    return path


# ---------------------------------------------------------------------------------------------------- shipped


def test_shipped_catalog_covers_the_three_environments_and_clouds(shipped):
    assert len(shipped) >= 15
    ids = [t.id for t in shipped]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", i) for i in ids)
    assert {t.environment for t in shipped} == set(ENVIRONMENTS)
    cloud = [t for t in shipped if t.environment == "cloud"]
    for provider in ("aws", "azure", "gcp"):
        assert {t.device for t in cloud if t.provider == provider} >= {"cpu", "gpu"}, provider
    assert {t.device for t in shipped} >= {"cpu", "gpu", "npu", "tpu"}
    assert not any(t.probed or t.id == "this-machine" for t in shipped)


def test_shipped_figures_have_sources_canonical_units_and_plausible_values(shipped):
    for t in shipped:
        figures = [*t.peak.values(), t.memory, t.price] + ([t.power] if t.power else [])
        assert all(f.source.strip() for f in figures), t.id
        assert t.peak and t.precisions == tuple(p for p in PRECISIONS if p in t.peak)
        for precision, figure in t.peak.items():
            assert figure.unit == CANONICAL[precision], (t.id, precision)
        fp32, int8 = t.peak_gops("fp32"), t.peak_gops("int8")
        if fp32 is not None:
            assert 1 < fp32 < 2_000_000, t.id
        if fp32 is not None and int8 is not None:
            assert int8 >= fp32, t.id
        assert t.memory.unit == "GB" and 0.1 < t.memory.value < 10_000, t.id
        assert re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", t.price_date), t.id
        assert t.runtimes and set(t.runtimes) <= set(RUNTIMES), t.id
        assert len(t.formats) == len(t.runtimes) and t.concurrency >= 1
        if t.environment == "cloud":
            assert t.price.unit == "USD/hour" and t.power is None, t.id
            assert 0.01 < t.price.value < 100, t.id
        else:
            assert t.price.unit == "USD" and t.price.value > 1, t.id
            assert t.power is not None and t.power.unit == "W" and 0.5 < t.power.value < 2000, t.id


def test_shipped_edge_targets_the_brief_names(shipped):
    by_id = {t.id: t for t in shipped}
    assert by_id["coral-usb-accelerator"].precisions == ("int8",)
    assert by_id["coral-usb-accelerator"].runtimes == ("litert",)
    assert by_id["raspberry-pi-5-8gb"].formats == ("tflite", "onnx", "openvino")
    assert by_id["intel-core-ultra-7-155h-npu"].device == "npu"
    assert sum(t.provider == "nvidia" and t.environment == "edge" for t in shipped) >= 2


# ---------------------------------------------------------------------------------------------------- units, merging


def test_units_are_converted(tmp_path):
    memory = {"value": 512, "unit": "MB", "source": "test"}
    (box,) = load_file(write(tmp_path / "t.yaml", entry(memory=memory)))
    assert box.peak["fp32"].value == pytest.approx(200) and box.peak["fp32"].unit == "GFLOP/s"
    assert box.peak["int8"].value == pytest.approx(2000) and box.peak["int8"].unit == "GOP/s"
    assert box.memory.value == pytest.approx(0.512) and box.memory.unit == "GB"
    (box,) = load_file(write(tmp_path / "t.yaml", entry()))
    assert box.memory.value == pytest.approx(4 * 1.073741824)
    assert box.peak_gops("bf16") is None and box.formats == ("onnx",)


def test_a_user_file_adds_and_overrides(tmp_path, monkeypatch, shipped):
    cloud = {"value": 9.99, "unit": "USD/hour", "source": "my contract"}
    override = entry("aws-g4dn-xlarge", environment="cloud", power=..., price=cloud)
    targets = load_catalog([write(tmp_path / "mine.yaml", entry(), override)], probe=False)
    assert len(targets) == len(shipped) + 1
    assert [t.id for t in targets][: len(shipped)] == [t.id for t in shipped]  # a replaced id keeps its place
    assert find_target(targets, "aws-g4dn-xlarge").price.value == 9.99
    assert find_target(targets, "my-box").name == "My box"

    second = write(tmp_path / "second.yaml", entry("my-box", name="Renamed"), entry("other-box"))
    monkeypatch.setenv(catalog.ENV_VARIABLE, f"{tmp_path / 'mine.yaml'}{catalog.os.pathsep}{second}")
    targets = load_catalog(probe=False)
    assert len(targets) == len(shipped) + 2
    assert find_target(targets, "my-box").name == "Renamed"
    assert find_target(targets, "aws-g4dn-xlarge").price.value == 9.99


def test_find_target_lists_the_known_ids(shipped):
    with pytest.raises(ConfigError) as caught:
        find_target(shipped, "no-such-box")
    assert "no-such-box" in str(caught.value)
    assert "aws-c7i-xlarge" in str(caught.value) and "raspberry-pi-5-8gb" in str(caught.value)


# ---------------------------------------------------------------------------------------------------- bad input

_PEAK = {"value": 1, "unit": "TFLOP/s", "source": "x"}
BROKEN = {
    "wrong unit": (entry(memory={"value": 4, "unit": "GHz", "source": "x"}), "memory"),
    "int8 in flop/s": (entry(peak={"int8": _PEAK}), "peak.int8"),
    "missing source": (entry(peak={"fp32": {"value": 1, "unit": "TFLOP/s"}}), "peak.fp32"),
    "empty source": (entry(power={"value": 1, "unit": "W", "source": " "}), "power"),
    "negative value": (entry(price={"value": -5, "unit": "USD", "source": "x"}), "price"),
    "zero value": (entry(power={"value": 0, "unit": "W", "source": "x"}), "power"),
    "unknown runtime": (entry(runtimes=["onnxruntime", "coreml"]), "runtimes"),
    "unknown precision": (entry(peak={"fp8": _PEAK}), "peak.fp8"),
    "unknown environment": (entry(environment="orbit"), "environment"),
    "unknown device": (entry(device="fpga"), "device"),
    "edge priced per hour": (entry(price={"value": 1, "unit": "USD/hour", "source": "x"}), "price"),
    "cloud priced per unit": (
        entry(environment="cloud", power=..., price={"value": 1, "unit": "USD", "source": "x"}),
        "price",
    ),
    "cloud with power": (entry(environment="cloud", price={"value": 1, "unit": "USD/hour", "source": "x"}), "power"),
    "bad price_date": (entry(price_date="January 2025"), "price_date"),
    "unknown key": (entry(colour="green"), "colour"),
    "missing field": (entry(memory=...), "memory"),
    "bad id": (entry("My Box"), "id"),
    "reserved id": (entry("this-machine"), "id"),
    "bad concurrency": (entry(concurrency=0), "concurrency"),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_entry_names_file_target_and_field(tmp_path, case):
    data, field = BROKEN[case]
    path = write(tmp_path / "broken.yaml", entry("good-box"), data)
    with pytest.raises(ConfigError) as caught:
        load_catalog([path], probe=False)
    text = str(caught.value)
    assert str(path) in text and f"field {field}" in text
    label = repr(data["id"]) if "id" in data else "entry 1"
    assert label in text and "entry 1" in text and caught.value.fix


def test_a_duplicate_id_in_one_file(tmp_path):
    path = write(tmp_path / "dup.yaml", entry(), entry())
    with pytest.raises(ConfigError, match=r"dup\.yaml: target 'my-box' \(entry 1\), field id: duplicate"):
        load_file(path)


@pytest.mark.parametrize(
    "raw, words",
    [
        ('version: 1\ntargets:\n  - id: broken-box\n    name: "unclosed\n', "near target 'broken-box', field name"),
        ("version: 1\ntargets:\n  - id: b\n    name: a\n   provider: x\n", "line 5, column 4 (near target 'b'"),
        ("", "the file is empty"),
        ("- just\n- a list\n", "not a mapping"),
        ("version: 1\ntargets:\n  - 42\n", "entry 0"),
        ("version: 2\ntargets: []\n", "version must be 1"),
        ("version: 1\ntargets: {a: 1}\n", "`targets` must be a list"),
        ("version: 1\ntargets: []\nextra: 1\n", "unknown top-level key"),
    ],
)
def test_a_broken_file_names_the_file(tmp_path, raw, words):
    path = write(tmp_path / "bad.yaml", raw=raw)
    with pytest.raises(ConfigError) as caught:
        load_file(path)
    assert str(path) in str(caught.value) and words in str(caught.value)


def test_missing_and_non_utf8_files(tmp_path):
    with pytest.raises(ConfigError, match="not found") as caught:
        load_catalog([tmp_path / "nowhere.yaml"], probe=False)
    assert "nowhere.yaml" in str(caught.value)
    (tmp_path / "latin1.yaml").write_bytes("version: 1\ntargets: []\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="latin1.yaml: not UTF-8"):
        load_file(tmp_path / "latin1.yaml")


def test_a_python_tag_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "marker"
    raw = textwrap.dedent(
        f"""\
        version: 1
        targets:
          - id: evil
            name: !!python/object/apply:os.system ["touch {marker}"]
        """
    )
    path = write(tmp_path / "evil.yaml", raw=raw)
    with pytest.raises(ConfigError) as caught:
        load_file(path)
    assert str(path) in str(caught.value) and "not valid YAML at line 4" in str(caught.value)
    assert "near target 'evil', field name" in str(caught.value)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------- this machine


@pytest.fixture
def probe(monkeypatch):
    """Run `this_machine()` with fake flags, clock, GEMM rate and memory; the cache is cleared before and after."""

    def run(isa: list[str], mhz: float | None = 2500.0) -> Target:
        monkeypatch.setattr(environment, "cpu_info", lambda: {"model": "Test CPU", "isa": isa})
        monkeypatch.setattr(environment, "usable_cores", lambda: 2)
        monkeypatch.setattr(environment, "gemm_gflops", lambda threads: 100.0)
        monkeypatch.setattr(environment, "memory_gb", lambda: 16.0)
        monkeypatch.setattr(catalog, "cpu_facts", lambda: {"mhz": mhz, "threads_per_core": 1, "flags": frozenset()})
        this_machine.cache_clear()
        return this_machine()

    yield run
    this_machine.cache_clear()


def test_this_machine_peaks_follow_the_cpu_flags(probe):
    plain = probe(["avx2", "fma"])
    assert plain.id == "this-machine" and plain.probed and plain.environment == "on_prem"
    assert plain.device == "cpu" and plain.provider == "local" and plain.power is None
    assert plain.peak_gops("fp32") == 2 * 2.5 * 32  # cores x GHz x AVX2 FMA ops per cycle
    assert plain.peak["fp32"].source.startswith("derived: 2 cores x 2.50 GHz x 32")
    assert plain.peak_gops("bf16") is None  # no native bf16: it would run as fp32
    assert plain.peak_gops("int8") == 2 * plain.peak_gops("fp32")
    assert plain.memory.value == pytest.approx(17.2) and plain.memory.unit == "GB"
    assert plain.price.value == 0 and plain.price.unit == "USD" and plain.price.source == "already owned"
    assert set(plain.runtimes) <= set(RUNTIMES)

    vnni = probe(["avx2", "fma", "avx512f", "avx512_vnni"])
    assert vnni.peak_gops("int8") == 2 * 2.5 * 256 and vnni.peak_gops("bf16") is None
    assert "avx512_vnni" in vnni.peak["int8"].source

    amx = probe(["avx512f", "amx_bf16", "amx_int8", "avx512_bf16"])
    assert amx.peak_gops("bf16") == 2 * 2.5 * 1024 and amx.peak_gops("int8") == 2 * 2.5 * 2048
    assert amx.precisions == ("fp32", "bf16", "int8")

    unclocked = probe(["avx2"], mhz=None)  # no clock reported: the measured GEMM rate stands in
    assert unclocked.peak_gops("fp32") == 100.0 and unclocked.peak["fp32"].source.startswith("probed:")


def test_the_probe_is_added_last_and_cached(probe):
    machine = probe(["fma", "avx_vnni"])
    targets = load_catalog()
    assert targets[-1] is machine and this_machine() is machine
    assert machine.peak_gops("int8") == 2 * 2.5 * 128
