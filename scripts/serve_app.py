"""Serve the Workbench app (Voila) or JupyterLab on 127.0.0.1 only, behind a token: what `make app` and `make lab` run.

    python scripts/serve_app.py app [--port 8866] [--notebook-dir DIR] [SERVER OPTIONS...]
    python scripts/serve_app.py lab [--port 8888] [--notebook-dir DIR] [SERVER OPTIONS...]

Environment:
    WORKBENCH_TOKEN                        the token to require; unset or empty: a fresh random one at each start
    WORKBENCH_CERTFILE, WORKBENCH_KEYFILE  serve HTTPS with this certificate and private key (both or neither)

The server runs in this process, so the token never appears on a command line (`ps` shows every local user the
command lines of all processes). It prints the URL to open at start, with the token when it generated it (as
Jupyter does); a token from WORKBENCH_TOKEN is shown as `...`. The address, the token and the certificate are
given after any SERVER OPTIONS, so an option cannot widen them. The lab starts with Jupyter's news and update
checks off: it neither asks whether to fetch Jupyter news nor fetches it.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import secrets
import ssl
import sys
import tempfile
from pathlib import Path

from jupyter_server.auth.identity import PasswordIdentityProvider

HOST = "127.0.0.1"
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PORTS = {"app": 8866, "lab": 8888}
APP_NOTEBOOK = "app.ipynb"
# JupyterLab reads default setting overrides from <config dir>/labconfig/default_setting_overrides.json
NEWS_OFF = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False}}


class WorkbenchIdentityProvider(PasswordIdentityProvider):
    """Jupyter's token login; prints a token this launcher generated in full, like one Jupyter generates."""

    token_generated = False  # set by main(): True when the token is not the user's own


def _provider_name() -> str:
    return f"{WorkbenchIdentityProvider.__module__}.{WorkbenchIdentityProvider.__qualname__}"


def _token() -> tuple[str, bool]:
    """The token to require, and whether it was generated here."""
    token = os.environ.get("WORKBENCH_TOKEN", "").strip()
    return (token, False) if token else (secrets.token_hex(24), True)


def _certificate() -> tuple[str, str] | None:
    certfile, keyfile = os.environ.get("WORKBENCH_CERTFILE", ""), os.environ.get("WORKBENCH_KEYFILE", "")
    if not certfile and not keyfile:
        return None
    if not (certfile and keyfile):
        sys.exit("error: set both WORKBENCH_CERTFILE and WORKBENCH_KEYFILE for HTTPS, or neither")
    for path in (certfile, keyfile):
        if not Path(path).is_file():
            sys.exit(f"error: {path} (WORKBENCH_CERTFILE / WORKBENCH_KEYFILE) is not a file")
    return str(Path(certfile).resolve()), str(Path(keyfile).resolve())


def serve_lab(port: int, notebook_dir: Path, extra: list[str], token: str, certificate) -> None:
    from jupyterlab.labapp import LabApp

    argv = [
        *extra,
        f"--ServerApp.root_dir={notebook_dir}",
        f"--ServerApp.ip={HOST}",
        f"--ServerApp.port={port}",
        "--ServerApp.open_browser=False",
        f"--ServerApp.identity_provider_class={_provider_name()}",
        f"--IdentityProvider.token={token}",
        "--LabApp.news_url=None",  # the server fetches no news feed ...
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",  # nor versions
    ]
    if certificate:
        argv += [f"--ServerApp.certfile={certificate[0]}", f"--ServerApp.keyfile={certificate[1]}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # root on Linux and macOS; Windows has no euid
        argv.append("--allow-root")
    with tempfile.TemporaryDirectory(prefix="workbench-labconfig-") as config:
        # ... and the page does not ask whether to: fetchNews defaults to "false" (never) instead of "none" (ask)
        (Path(config) / "labconfig").mkdir()
        (Path(config) / "labconfig" / "default_setting_overrides.json").write_text(json.dumps(NEWS_OFF))
        paths = [config, os.environ.get("JUPYTER_CONFIG_PATH")]
        os.environ["JUPYTER_CONFIG_PATH"] = os.pathsep.join(filter(None, paths))
        LabApp.launch_instance(argv)


def serve_app(port: int, notebook_dir: Path, extra: list[str], token: str, certificate) -> None:
    from traitlets import Unicode
    from voila.app import Voila

    class WorkbenchVoila(Voila):
        """Standalone Voila (its kernels accept widget messages only, never code), plus HTTPS."""

        certfile = Unicode("", config=True, help="PEM certificate: serve HTTPS")
        keyfile = Unicode("", config=True, help="PEM private key of certfile")

        def listen(self):
            if self.certfile:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(self.certfile, self.keyfile)
                self.app.listen = functools.partial(self.app.listen, ssl_options=context)
            super().listen()

        def _url(self, ip):
            url = super()._url(ip)
            return "https" + url.removeprefix("http") if self.certfile else url

    argv = [
        APP_NOTEBOOK,
        *extra,
        f"--Voila.ip={HOST}",
        f"--Voila.port={port}",
        "--Voila.open_browser=False",
        f"--Voila.identity_provider_class={_provider_name()}",
        f"--Voila.token={token}",
    ]
    if certificate:
        argv += [f"--WorkbenchVoila.certfile={certificate[0]}", f"--WorkbenchVoila.keyfile={certificate[1]}"]
    os.chdir(notebook_dir)  # Voila serves the notebook's folder and runs its kernel there
    WorkbenchVoila.launch_instance(argv)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["app", "lab"], help="app: the Workbench app in Voila; lab: JupyterLab")
    parser.add_argument("--port", type=int, help="default: 8866 for the app, 8888 for the lab")
    parser.add_argument("--notebook-dir", type=Path, default=ROOT / "notebooks", help="default: the repo's notebooks")
    args, extra = parser.parse_known_args(argv)
    notebook_dir = args.notebook_dir.resolve()
    if args.what == "app" and not (notebook_dir / APP_NOTEBOOK).is_file():
        sys.exit(f"error: no {APP_NOTEBOOK} in {notebook_dir}")
    token, generated = _token()
    WorkbenchIdentityProvider.token_generated = generated
    serve = serve_app if args.what == "app" else serve_lab
    serve(args.port or DEFAULT_PORTS[args.what], notebook_dir, extra, token, _certificate())


if __name__ == "__main__":
    main()
