"""Install the workbench from its lock: what every make target runs first (standard library only).

    python3.11 scripts/install.py learner|dev [--venv .venv] [--wheelhouse DIR]
    python3.11 scripts/install.py lock
    python3.11 scripts/install.py wheelhouse DIR [--profile learner|dev]
    python3.11 scripts/install.py check [--venv .venv]

Profiles (each a lock in requirements/, every package pinned for Python 3.11 on Linux x86_64):
    learner  what the chapters and the app need: `.[all]`
    dev      the learner profile plus the test tools and LiteRT: `.[all,test,litert]`

uv installs the lock (`uv pip sync`: the venv then holds exactly the lock, plus the project itself, editable). uv
does not read pip's configuration, so the package sources pip is configured with (`pip config list`: index, extra
indexes, find-links, constraints, certificate) are handed to uv as its own options: both resolve from the same
places. uv itself is installed by pip (so through that same configuration) into <venv>/.uv.

A wheelhouse is a folder of every wheel of a profile (pip download), plus uv and setuptools: a teacher prepares it
once, and `--wheelhouse DIR` installs from it alone (no index is asked).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ROOT / "requirements"
UV_VERSION = "0.13.10"
# The build backend of the editable install (pyproject's build-system), for an offline wheelhouse
SETUPTOOLS = "setuptools>=77"
PROFILES = {"learner": ["all"], "dev": ["all", "test", "litert"]}
COMPILE_TARGET = ["--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28"]
STAMP = ".workbench-profile.json"
# What a venv holds beyond the lock: the project itself and the seed `python -m venv` puts in
NOT_LOCKED = {"deploy-workbench", "pip"}


class InstallError(Exception):
    """A problem the user can fix, said with the fix."""


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_path(profile: str) -> Path:
    return LOCKS / f"{profile}.lock"


def read_lock(path: Path) -> dict[str, str]:
    """Package name (canonical) -> pinned version, from a lock's `name==version` lines."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep:
                raise InstallError(f"{path}: '{line}' is not pinned as name==version; run `make lock` to write it anew")
            pins[canonical(name.split("[", 1)[0])] = version.split(";", 1)[0].strip()
    return pins


def pip_config(python: str = sys.executable) -> dict[str, list[str]]:
    """pip's own configuration as `pip config list` gives it, key -> values; a PIP_ variable wins over a file."""
    out = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=False).stdout
    from_files: dict[str, list[str]] = {}
    from_env: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            scope, _, name = key.rpartition(".")
            (from_env if scope == ":env:" else from_files)[name] = shlex.split(value.strip().strip("'\""))
    return {**from_files, **from_env}


def uv_sources(wheelhouse: Path | None, python: str = sys.executable) -> tuple[list[str], dict[str, str]]:
    """uv's options and environment for the same sources as pip's; a wheelhouse alone where one is given."""
    if wheelhouse is not None:
        return ["--no-index", "--find-links", str(wheelhouse)], {}
    config = pip_config(python)
    args = ["--index-strategy", "unsafe-best-match"]  # pip's way: the best version over every index
    for url in config.get("index-url", []):
        args += ["--default-index", url]
    for url in config.get("extra-index-url", []):
        args += ["--index", url]
    for place in config.get("find-links", []):
        args += ["--find-links", place]
    for file in config.get("constraint", []):
        args += ["--constraints", file]
    if config.get("no-index"):
        args.append("--no-index")
    env = {"SSL_CERT_FILE": config["cert"][0]} if config.get("cert") else {}
    return args, env


def run(cmd: list[str], env: dict[str, str] | None = None) -> None:
    result = subprocess.run(cmd, env={**os.environ, **(env or {})}, check=False)
    if result.returncode != 0:
        raise InstallError(f"`{' '.join(cmd[:4])} ...` failed with status {result.returncode} (its output is above)")


def ensure_uv(venv: Path, wheelhouse: Path | None) -> Path:
    uv = venv / ".uv" / "bin" / "uv"
    if uv.exists():
        found = subprocess.run([str(uv), "--version"], capture_output=True, text=True, check=False).stdout
        if found.split()[1:2] == [UV_VERSION]:
            return uv
    where = ["--no-index", "--find-links", str(wheelhouse)] if wheelhouse else []
    run([sys.executable, "-m", "pip", "install", "-qq", "--disable-pip-version-check", "--upgrade", "--target",
         str(venv / ".uv"), *where, f"uv=={UV_VERSION}"])  # fmt: skip
    return uv


def fingerprint(profile: str) -> dict[str, str]:
    """What a venv synced from this profile's lock records: the pins' digest (comments do not count)."""
    pins = "\n".join(f"{name}=={version}" for name, version in sorted(read_lock(lock_path(profile)).items()))
    return {"profile": profile, "pins_sha256": hashlib.sha256(pins.encode()).hexdigest()}


def installed_profile(venv: Path) -> dict[str, str] | None:
    try:
        return json.loads((venv / STAMP).read_text())
    except (OSError, ValueError):
        return None


def up_to_date(venv: Path, profile: str) -> bool:
    """The venv holds this profile's lock as it is now, or the dev lock (which holds every learner package)."""
    have = installed_profile(venv)
    wanted = [profile, "dev"] if profile == "learner" else [profile]
    return have is not None and any(have == fingerprint(p) for p in wanted if lock_path(p).exists())


def install(profile: str, venv: Path, wheelhouse: Path | None) -> None:
    lock = lock_path(profile)
    if not lock.exists():
        raise InstallError(f"{lock} is missing; run `make lock` to write it")
    if up_to_date(venv, profile):
        return
    started = time.monotonic()
    if not (venv / "bin" / "python").exists():
        run([sys.executable, "-m", "venv", str(venv)])
    uv = ensure_uv(venv, wheelhouse)
    python = str(venv / "bin" / "python")
    sources, env = uv_sources(wheelhouse)
    (venv / STAMP).unlink(missing_ok=True)  # a sync cut short leaves no claim that the venv holds the lock
    run([str(uv), "pip", "sync", "--quiet", "--python", python, *sources, str(lock)], env)
    run([str(uv), "pip", "install", "--quiet", "--python", python, "--no-deps", *sources, "-e", str(ROOT)], env)
    (venv / STAMP).write_text(json.dumps(fingerprint(profile)) + "\n")
    print(
        f"installed the {profile} profile ({lock.relative_to(ROOT)}) into {venv} in {time.monotonic() - started:.0f} s"
    )


def compile_lock(uv: Path, profile: str, extra: list[str], keep: bool = False) -> None:
    sources, env = uv_sources(None)
    extras = [arg for name in PROFILES[profile] for arg in ("--extra", name)]
    upgrade = [] if keep else ["--upgrade"]
    run([str(uv), "pip", "compile", "--quiet", "--no-header", *upgrade, str(ROOT / "pyproject.toml"), *extras,
         "--annotation-style", "line",
         "--override", str(LOCKS / "overrides.txt"), *COMPILE_TARGET, *sources, *extra,
         "-o", str(lock_path(profile))], env)  # fmt: skip
    header = (
        f"# The {profile} profile: pyproject.toml with {', '.join(PROFILES[profile])}, every package pinned\n"
        "# for Python 3.11 on Linux x86_64. Written by `make lock` (scripts/install.py); not by hand.\n"
    )
    lines = [without_constraint_files(line) for line in lock_path(profile).read_text().splitlines()]
    lock_path(profile).write_text(header + "\n".join(lines) + "\n")


def without_constraint_files(line: str) -> str:
    """A lock line's `# via` list less the constraint files given (paths of this machine)."""
    pin, sep, via = line.partition("# via ")
    sources = [s.strip() for s in via.split(",") if s.strip() and not s.strip().startswith("-c ")]
    return f"{pin}# via {', '.join(sources)}" if sources else pin.rstrip()


def lock(venv: Path, keep: bool = False) -> None:
    """Resolve the dev profile, then the learner profile inside it (same versions, fewer packages).

    keep: keep every pin that still satisfies pyproject.toml (after adding a package); else upgrade all."""
    uv = ensure_uv(venv, None)
    compile_lock(uv, "dev", [], keep)
    compile_lock(uv, "learner", ["--constraints", str(lock_path("dev"))], keep)
    for profile in PROFILES:
        print(f"{lock_path(profile).relative_to(ROOT)}: {len(read_lock(lock_path(profile)))} packages")


def wheelhouse(folder: Path, profile: str) -> None:
    """Every wheel the profile installs, plus uv and the build backend, into one folder (pip download)."""
    marker = folder / ".workbench-wheelhouse.json"
    if marker.exists() and json.loads(marker.read_text()) == fingerprint(profile):
        print(f"{folder}: holds the {profile} lock already")
        return
    folder.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--dest", str(folder)]
    run([*pip, "--no-deps", "--only-binary", ":all:", "-r", str(lock_path(profile))])
    run([*pip, "--only-binary", ":all:", f"uv=={UV_VERSION}", SETUPTOOLS])
    marker.write_text(json.dumps(fingerprint(profile)) + "\n")
    size = sum(f.stat().st_size for f in folder.glob("*.whl")) / 2**30
    print(f"{folder}: {len(list(folder.glob('*.whl')))} wheels, {size:.1f} GiB; on each machine: "
          f"make demo WHEELHOUSE={folder}")  # fmt: skip


def drift(venv: Path) -> list[str]:
    """How the venv differs from the lock of the profile it says it holds (empty: it is the lock)."""
    have = installed_profile(venv)
    if have is None:
        return [f"{venv} records no installed profile ({STAMP}); install it with `make test` or `make demo`"]
    if have.get("profile") not in PROFILES or have != fingerprint(have["profile"]):
        return [f"{venv} was installed from another {have.get('profile')} lock; run `make` again to sync it"]
    listing = [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m, json; "
               "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"]  # fmt: skip
    installed = json.loads(subprocess.check_output(listing, text=True))
    return differences(read_lock(lock_path(have["profile"])), installed)


def differences(pins: dict[str, str], installed: dict[str, str]) -> list[str]:
    """Each locked package missing or at another version, and each installed package the lock does not hold."""
    have = {canonical(name): version for name, version in installed.items()}
    problems = [f"{name}: locked {version}, installed {have.get(name, 'nothing')}"
                for name, version in sorted(pins.items()) if have.get(name) != version]  # fmt: skip
    problems += [f"{name}=={version}: installed, not in the lock"
                 for name, version in sorted(have.items()) if name not in pins and name not in NOT_LOCKED]  # fmt: skip
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=[*PROFILES, "lock", "wheelhouse", "check"])
    parser.add_argument("folder", nargs="?", type=Path, help="wheelhouse: the folder to fill")
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv")
    parser.add_argument("--wheelhouse", type=Path, help="install from this folder of wheels alone")
    parser.add_argument("--profile", choices=list(PROFILES), default="learner", help="wheelhouse: which profile")
    parser.add_argument("--keep", action="store_true", help="lock: keep the pins that still fit (after adding one)")
    args = parser.parse_args(argv)
    try:
        if args.wheelhouse is not None and not any(args.wheelhouse.glob("*.whl")):
            raise InstallError(f"{args.wheelhouse} holds no wheels; fill it with `make wheelhouse WHEELHOUSE=DIR`")
        if args.action in PROFILES:
            install(args.action, args.venv.absolute(), args.wheelhouse)
        elif args.action == "lock":
            lock(args.venv.absolute(), args.keep)
        elif args.action == "wheelhouse":
            if args.folder is None:
                raise InstallError("wheelhouse needs the folder to fill: scripts/install.py wheelhouse DIR")
            wheelhouse(args.folder.absolute(), args.profile)
        else:
            problems = drift(args.venv.absolute())
            print("\n".join(problems) or f"{args.venv} holds exactly its lock")
            return 1 if problems else 0
    except InstallError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
