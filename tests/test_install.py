"""The locked install: the venv holds exactly its lock, the locks hold pyproject's requirements, and the learner
profile installs from a wheelhouse with the network refused."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("install", ROOT / "scripts" / "install.py")
install = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(install)


def test_the_venv_holds_exactly_its_lock():
    venv = Path(sys.prefix)
    assert install.drift(venv) == [], f"the venv differs from its lock: {install.drift(venv)[:10]}"


def test_a_package_off_the_lock_is_named():
    pins = {"numpy": "2.4.6", "torch": "2.14.1"}
    installed = {"NumPy": "2.4.6", "torch": "2.15.0", "rich": "14.0", "deploy_workbench": "0.1.0", "pip": "23.2.1"}
    assert install.differences(pins, installed) == [
        "torch: locked 2.14.1, installed 2.15.0",
        "rich==14.0: installed, not in the lock",
    ]
    assert install.differences(pins, {"numpy": "2.4.6"}) == ["torch: locked 2.14.1, installed nothing"]


def test_a_stale_or_foreign_stamp_is_named(tmp_path):
    assert "records no installed profile" in install.drift(tmp_path)[0]
    (tmp_path / install.STAMP).write_text('{"profile": "dev", "pins_sha256": "0"}')
    assert "another dev lock" in install.drift(tmp_path)[0]


def locked(profile: str) -> dict[str, str]:
    return install.read_lock(install.lock_path(profile))


def requirements_of(profile: str) -> list[str]:
    """pyproject's requirements for a profile, its extras expanded (`deploy-workbench[a,b]` names other extras)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras, wanted, todo = (
        project["optional-dependencies"],
        list(project["dependencies"]),
        list(install.PROFILES[profile]),
    )
    while todo:
        for text in extras[todo.pop()]:
            requirement = Requirement(text)
            if requirement.name == "deploy-workbench":
                todo += sorted(requirement.extras)
            else:
                wanted.append(text)
    return wanted


@pytest.mark.parametrize("profile", sorted(install.PROFILES))
def test_each_lock_satisfies_pyproject(profile):
    pins = locked(profile)
    unmet = []
    for text in requirements_of(profile):
        requirement = Requirement(text)
        version = pins.get(install.canonical(requirement.name))
        if version is None or not requirement.specifier.contains(version, prereleases=True):
            unmet.append(f"{text}: locked {version}")
    assert len(requirements_of(profile)) > 20
    assert unmet == [], f"pyproject.toml changed since the lock; run `make lock`: {unmet}"


def test_the_learner_lock_is_the_dev_lock_less_the_test_tools():
    learner, dev = locked("learner"), locked("dev")
    assert {name: dev.get(name) for name in learner} == learner
    for tool in ("pytest", "playwright", "ruff", "ai-edge-litert", "litert-torch", "hypothesis"):
        assert tool in dev and tool not in learner


def test_uv_is_given_pips_sources(monkeypatch):
    config = {"index-url": ["https://mirror.example/simple"], "extra-index-url": ["file:///a", "file:///b"],
              "find-links": ["/wheels"], "constraint": ["/c.txt"], "cert": ["/ca.pem"]}  # fmt: skip
    monkeypatch.setattr(install, "pip_config", lambda python=None: config)
    args, env = install.uv_sources(None)
    assert args == ["--index-strategy", "unsafe-best-match", "--default-index", "https://mirror.example/simple",
                    "--index", "file:///a", "--index", "file:///b", "--find-links", "/wheels",
                    "--constraints", "/c.txt"]  # fmt: skip
    assert env == {"SSL_CERT_FILE": "/ca.pem"}
    assert install.uv_sources(Path("/wh")) == (["--no-index", "--find-links", "/wh"], {})


def network_refused() -> list[str] | None:
    """A command prefix that runs its command with no network at all (a namespace of its own), where one is had."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-n"]
    return None


@pytest.mark.slow
def test_the_learner_profile_installs_from_a_wheelhouse_offline(tmp_path):
    """Half a minute and 7 GB of disk, freed at the end: uv alone from the wheelhouse `make test` filled."""
    offline, wheels = network_refused(), os.environ.get("WORKBENCH_TEST_WHEELHOUSE")
    if offline is None:
        pytest.skip("no network namespace can be made here (unshare -n), so the network cannot be refused")
    if not wheels:
        pytest.skip("WORKBENCH_TEST_WHEELHOUSE is not set: `make test` fills the learner wheelhouse and sets it")
    venv = tmp_path / "venv"
    try:
        env = {**os.environ, "UV_CACHE_DIR": str(tmp_path / "uv-cache")}  # nothing from this machine's uv cache
        python = str(Path(sys.base_prefix) / "bin" / "python3.11")  # what `make` runs the script with
        command = [python, str(ROOT / "scripts" / "install.py"), "learner", "--venv", str(venv), "--wheelhouse", wheels]
        result = subprocess.run([*offline, *command], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "installed the learner profile" in result.stdout
        assert install.drift(venv) == []
        modules = "workbench, torch, openvino, onnxruntime, nncf, ipywidgets, voila"
        probe = [*offline, str(venv / "bin" / "python"), "-c", f"import {modules}; print(workbench.__file__)"]
        imported = subprocess.run(probe, capture_output=True, text=True)
        assert imported.returncode == 0, imported.stderr
        assert imported.stdout.strip().startswith(str(ROOT / "workbench"))
        missing = subprocess.run([str(venv / "bin" / "python"), "-c", "import pytest"], capture_output=True)
        assert missing.returncode != 0, "the learner profile holds the test tools"
    finally:
        shutil.rmtree(venv, ignore_errors=True)
