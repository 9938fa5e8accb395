"""Deployment bundles: the files, every Kubernetes manifest checked against the Kubernetes schemas, the locked-down
security context, the Dockerfile line by line, no secret anywhere, the model opened from the bundle as from the
plain artifact, altered bundles refused, and the server started from the bundle as the container starts it."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("cryptography")
pytest.importorskip("onnxruntime")

from workbench.core.errors import ConfigError  # noqa: E402
from workbench.core.models.runners import RuntimeOptions, example_input, open_runner  # noqa: E402
from workbench.core.serve.bundle import config as bundle_config  # noqa: E402
from workbench.core.serve.bundle import load, make, manifest, protect  # noqa: E402
from workbench.core.serve.bundle.protect import DecryptionError, SignatureError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMGSZ = 64
OPTIONS = RuntimeOptions(threads=1)
K8S_KINDS = {
    "deployment.yaml": ["Deployment"],
    "service.yaml": ["Service"],
    "hpa.yaml": ["HorizontalPodAutoscaler"],
    "secrets.template.yaml": ["Secret", "Secret", "Secret"],
    "inferenceservice.yaml": ["InferenceService"],
}


def _cheap_hasher():
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # tests only: the store's own is 20-30 ms


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A workspace with the demo model as ONNX (64 px) and as .pt, an API key store in it, keys beside it, a bundle."""
    from workbench.core.models.cards import demo_weights
    from workbench.core.models.export import ExportConfig, export_artifact
    from workbench.core.serve.security.keys import KeyStore
    from workbench.core.store.workspace import Workspace

    root = tmp_path_factory.mktemp("bundle")
    export_artifact(demo_weights(), ExportConfig(format="onnx", imgsz=IMGSZ), root / "demo.onnx")
    workspace = Workspace(root / "ws")
    onnx_id = workspace.add_artifact(root / "demo.onnx", "demo.onnx", step="export", params={"imgsz": IMGSZ},
                                     format="onnx")  # fmt: skip
    pt_id = workspace.add_artifact(demo_weights(), "demo.pt", step="source", format="pytorch")
    store = KeyStore(workspace.root / "serve" / "keys.json", hasher=_cheap_hasher())
    reader = store.add("probe", "reader")
    key, signing = protect.generate_key(), protect.generate_signing_key(root / "keys")
    report = make.make_bundle(workspace, onnx_id, root / "out", model_key=key, signing_key_folder=root / "keys")
    return {
        "root": root, "workspace": workspace, "onnx_id": onnx_id, "pt_id": pt_id, "key": key, "signing": signing,
        "report": report, "out": report.out, "store": store.path, "reader": reader.key,
    }  # fmt: skip


def _docs(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _manifests(out: Path) -> dict[str, list[dict]]:
    return {name: _docs(out / "k8s" / name) for name in K8S_KINDS}


# -- the files --------------------------------------------------------------------------------------------------------


def test_the_bundle_holds_the_model_config_image_and_manifests_and_no_private_key(made):
    out, report = made["out"], made["report"]
    files = set(report.files)
    assert files == {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    expected = {"Dockerfile", ".dockerignore", "README.md", "server.yaml", "requirements.txt", "signing-key.pub.pem",
                bundle_config.MANIFEST, bundle_config.SIGNATURE, *(f"k8s/{n}" for n in K8S_KINDS),
                "model/bundle.json", "model/manifest.json", "model/manifest.sig"}  # fmt: skip
    assert expected <= files
    assert [n for n in files if n.startswith("model/") and n.endswith(".enc")]
    assert not [n for n in files if n.endswith(".onnx") or n.endswith(".pt") or "signing-key.pem" in n]
    assert (out / "signing-key.pub.pem").read_bytes() == made["signing"].public_key.read_bytes()
    assert "src/workbench/core/serve/bundle/make.py" in files and not any(
        n.startswith("src/workbench/widgets") for n in files
    )
    assert not list(out.parent.glob(".staging-*")), "the staging folder was left behind"
    readme = (out / "README.md").read_text()
    for needed in ("docker build", "docker run --rm --read-only --tmpfs /tmp", "-e WORKBENCH_MODEL_KEY", "kubectl",
                   "## Not included"):  # fmt: skip
        assert needed in readme, needed
    assert "${" not in readme and "$$" not in readme


def test_the_dockerignore_lets_in_only_what_the_image_copies(made):
    lines = [ln for ln in (made["out"] / ".dockerignore").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[0] == "*"
    allowed = {ln[1:].rstrip("/*") for ln in lines if ln.startswith("!")}
    assert allowed == {"Dockerfile", "requirements.txt", "model", "src", *bundle_config.SERVED}
    assert {"**/*.key", "**/*-key.pem", "**/keys.json"} <= set(lines)


# -- the Dockerfile ---------------------------------------------------------------------------------------------------


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    joined, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            joined.append(current.strip())
            current = ""
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in joined]


def test_the_dockerfile_pins_its_base_runs_as_a_numeric_non_root_user_and_checks_health(made):
    steps = _instructions(made["out"] / "Dockerfile")
    kinds = [k for k, _ in steps]
    assert kinds[0] == "FROM" and kinds.count("FROM") == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", steps[0][1]), steps[0][1]
    user = [a for k, a in steps if k == "USER"]
    assert (
        len(user) == 1
        and re.fullmatch(r"[1-9][0-9]*:[1-9][0-9]*", user[0])
        and user[0] == f"{bundle_config.UID}:{bundle_config.GID}"
    )
    assert kinds.index("USER") > max(i for i, k in enumerate(kinds) if k in ("RUN", "COPY")), (
        "nothing runs as root after"
    )
    health = [a for k, a in steps if k == "HEALTHCHECK"]
    assert len(health) == 1 and " CMD " in f" {health[0]}"
    probe = json.loads(health[0].split(" CMD ", 1)[1])
    assert probe[:2] == ["python", "-c"] and "https://127.0.0.1:8443/v2/health/live" in probe[2]
    assert json.loads(dict(steps)["CMD"]) == bundle_config.serve_command() == made["report"].command
    assert dict(steps)["EXPOSE"] == "8443"
    assert "ARG" not in kinds, "nothing is passed in at build time (a build argument stays in the image's history)"
    env = " ".join(a for k, a in steps if k == "ENV")
    assert not re.search(r"KEY|SECRET|PASSWORD|TOKEN", env), env
    copies = [a for k, a in steps if k == "COPY"]
    assert all(".pem " not in c or "signing-key.pub.pem" in c for c in copies)


def test_the_requirements_are_pinned_to_this_environment_and_cover_what_the_server_imports(made):
    import importlib.metadata as metadata

    from packaging.utils import canonicalize_name

    pins = dict(line.split("==") for line in (made["out"] / "requirements.txt").read_text().split())
    for name, version in pins.items():
        installed = "opencv-python" if name == "opencv-python-headless" else name
        assert metadata.version(installed) == version, name
    names = {canonicalize_name(n) for n in pins}
    assert {"onnxruntime", "uvicorn", "starlette", "cryptography", "argon2-cffi", "opencv-python-headless"} <= names
    assert not names & {"torch", "torchvision", "ultralytics", "openvino", "ipywidgets", "pandas", "plotly"}
    # What the serving path imports in a fresh interpreter: every third-party package of it is pinned.
    code = (
        "import sys, importlib.metadata as m\n"
        "import workbench.cli, workbench.core.serve.bundle.load as b, workbench.core.serve.security.tls\n"
        "import workbench.core.serve.service.server, workbench.core.serve.service.app\n"
        "import workbench.core.serve.security.keys\n"
        "import workbench.core.serve.security.audit, workbench.core.serve.security.guard\n"
        f"runner, server = b.load_bundle({str(made['out'])!r}, bytes.fromhex({made['key'].hex()!r}))\n"
        "d = m.packages_distributions()\n"
        "def owners(name):\n"  # a namespace shared by several distributions (google.*): the one holding the module
        "    parts, found = name.split('.'), d.get(name.split('.')[0], [])\n"
        "    if len(found) > 1:  # the namespace itself is nobody's; its modules are their distribution's\n"
        "        found = [x for x in found if len(parts) > 1 and any(str(f).startswith('/'.join(parts[:2]))\n"
        "                                                             for f in m.files(x) or ())]\n"
        "    return found\n"
        "print(' '.join(sorted({x for n in list(sys.modules) for x in owners(n)})))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    used = {canonicalize_name(n) for n in run.stdout.split()} - {"deploy-workbench", "setuptools"}
    assert used <= names, f"imported by the server but not pinned: {sorted(used - names)}"


# -- the manifests ----------------------------------------------------------------------------------------------------


def _k8s_validator(filename: str):
    """A JSON-schema validator for one Kubernetes type, from kubernetes-validate's shipped (offline) strict schemas."""
    import importlib.resources

    import jsonschema
    from kubernetes_validate.utils import latest_version
    from referencing import Registry, Resource

    folder = (
        importlib.resources.files("kubernetes_validate")
        / "kubernetes-json-schema"
        / f"v{latest_version()}-local-strict"
    )
    schema = json.loads((folder / filename).read_text())
    definitions = json.loads((folder / "_definitions.json").read_text())
    registry = Resource.from_contents(schema) @ (Resource.from_contents(definitions) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


# The fields of KServe's v1beta1 InferenceService this bundle uses, written here from KServe's API reference
# (InferenceServiceSpec, PredictorSpec = a PodSpec inline + ComponentExtensionSpec): no installed package ships
# KServe's CRD schema. The predictor's PodSpec part is checked against Kubernetes' own PodSpec schema.
KSERVE_EXTENSION = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "minReplicas": {"type": "integer", "minimum": 0},
        "maxReplicas": {"type": "integer", "minimum": 1},
        "scaleMetric": {"enum": ["cpu", "memory", "concurrency", "rps"]},
        "scaleMetricType": {"enum": ["Utilization", "AverageValue"]},
        "scaleTarget": {"type": "integer", "minimum": 1},
        "containerConcurrency": {"type": "integer", "minimum": 0},
        "timeout": {"type": "integer", "minimum": 1},
        "canaryTrafficPercent": {"type": "integer", "minimum": 0, "maximum": 100},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
KSERVE_TOP = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1beta1"},
        "kind": {"const": "InferenceService"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["predictor"],
            "additionalProperties": False,
            "properties": {"predictor": {"type": "object", "required": ["containers"]}},
        },
    },
}
KSERVE_DEPLOYMENT_MODES = ("Serverless", "RawDeployment", "ModelMesh")


def _validate_inference_service(doc: dict) -> None:
    import jsonschema

    jsonschema.validate(doc, KSERVE_TOP)
    _k8s_validator("objectmeta-meta-v1.json").validate(doc["metadata"])
    predictor = doc["spec"]["predictor"]
    extension = {k: v for k, v in predictor.items() if k in KSERVE_EXTENSION["properties"]}
    jsonschema.validate(extension, KSERVE_EXTENSION)
    _k8s_validator("podspec-v1.json").validate({k: v for k, v in predictor.items() if k not in extension})
    assert doc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] in KSERVE_DEPLOYMENT_MODES


def test_every_manifest_parses_and_validates_against_its_schema(made):
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    from kubernetes_validate.utils import latest_version

    manifests = _manifests(made["out"])
    assert {name: [d["kind"] for d in docs] for name, docs in manifests.items()} == K8S_KINDS
    for docs in manifests.values():
        for doc in docs:
            if doc["kind"] == "InferenceService":
                _validate_inference_service(doc)
            else:
                kubernetes_validate.validate(doc, latest_version(), strict=True)  # raises on any error
    broken = json.loads(json.dumps(manifests["deployment.yaml"][0]))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystm"] = True
    with pytest.raises(kubernetes_validate.ValidationError):  # strict: a misspelt field is caught, not ignored
        kubernetes_validate.validate(broken, latest_version(), strict=True)


def _pod_specs(manifests) -> list[dict]:
    return [
        manifests["deployment.yaml"][0]["spec"]["template"]["spec"],
        manifests["inferenceservice.yaml"][0]["spec"]["predictor"],
    ]


def test_pods_run_locked_down_with_probes_resources_and_secrets_mounted(made):
    manifests = _manifests(made["out"])
    for pod in _pod_specs(manifests):
        assert pod["automountServiceAccountToken"] is False
        assert (
            pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == bundle_config.UID
        )
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["tmp"]["emptyDir"]["medium"] == "Memory"
        assert volumes["tls"]["secret"]["secretName"].endswith("-tls")
        assert volumes["api-keys-secret"]["secret"]["secretName"].endswith("-api-keys")
        assert all(v["secret"]["defaultMode"] == 0o440 for v in volumes.values() if "secret" in v)
        for container in pod["initContainers"] + pod["containers"]:
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True and security["runAsUser"] == bundle_config.UID
            assert security["readOnlyRootFilesystem"] is True and security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]} and security["privileged"] is False
            assert security["seccompProfile"] == {"type": "RuntimeDefault"}
            assert set(container["resources"]) == {"requests", "limits"}
            assert set(container["resources"]["limits"]) == {"cpu", "memory"}
        server = pod["containers"][0]
        assert server["command"] == bundle_config.serve_command()
        mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
        assert (
            "/tmp" in mounts and mounts[bundle_config.TLS_DIR]["readOnly"] is True and bundle_config.STATE_DIR in mounts
        )
        assert mounts[bundle_config.KEYS_DIR]["name"] == "api-keys"
        (env,) = server["env"]
        assert env["name"] == "WORKBENCH_MODEL_KEY" and "value" not in env
        assert env["valueFrom"]["secretKeyRef"]["name"].endswith("-model-key")
        for probe, path in (("livenessProbe", "/v2/health/live"), ("readinessProbe", "/v2/health/ready")):
            assert server[probe]["httpGet"]["path"] == path and server[probe]["httpGet"]["scheme"] == "HTTPS"
        (init,) = pod["initContainers"]
        assert (
            init["command"][:3] == ["install", "-m", "0600"]
            and init["command"][-1] == "/var/run/workbench/keys/keys.json"
        )


def test_the_service_autoscaler_and_secret_templates_fit_the_deployment(made):
    manifests = _manifests(made["out"])
    deployment = manifests["deployment.yaml"][0]
    (service,), (hpa,) = manifests["service.yaml"], manifests["hpa.yaml"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
    assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    text = (made["out"] / "k8s" / "secrets.template.yaml").read_text()
    assert text.startswith("# TEMPLATE, NOT REAL SECRETS")
    secrets = manifests["secrets.template.yaml"]
    assert {s["type"] for s in secrets} == {"kubernetes.io/tls", "Opaque"}
    assert all(value.startswith("REPLACE-") for s in secrets for value in s["stringData"].values())
    names = {s["metadata"]["name"] for s in secrets}
    pod = deployment["spec"]["template"]["spec"]
    used = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    used |= {pod["containers"][0]["env"][0]["valueFrom"]["secretKeyRef"]["name"]}
    assert used == names
    kserve = manifests["inferenceservice.yaml"][0]
    assert kserve["spec"]["predictor"]["containers"][0]["image"] == pod["containers"][0]["image"]


# -- no secret --------------------------------------------------------------------------------------------------------


def _spellings(secret: bytes) -> list[bytes]:
    return [secret, secret.hex().encode(), secret.hex().upper().encode(), base64.b64encode(secret),
            base64.urlsafe_b64encode(secret).rstrip(b"=")]  # fmt: skip


def test_no_secret_is_anywhere_in_the_bundle(made):
    from cryptography.hazmat.primitives import serialization

    private = protect.as_private_key(made["signing"].private_key)
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    pem_body = b"".join(made["signing"].private_key.read_bytes().splitlines()[1:-1])
    api_key = made["reader"].encode()
    secrets = [*_spellings(made["key"]), *_spellings(raw), pem_body, api_key, api_key.split(b"_", 2)[2],
               made["store"].read_bytes()[:64]]  # fmt: skip
    for path in made["out"].rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(s in data for s in secrets), f"{path} holds a secret"
            assert b"PRIVATE KEY-----" not in data or path.suffix == ".py", path


# -- loading, tampering, config ---------------------------------------------------------------------------------------


def test_load_bundle_verifies_and_opens_the_model_as_the_plain_artifact_runs(made):
    runner, server = load.load_bundle(made["out"], made["key"], made["signing"].public_key, options=OPTIONS)
    plain = open_runner(made["workspace"].artifact_path(made["onnx_id"]), OPTIONS)
    batch = example_input(plain, IMGSZ)
    for ours, theirs in zip(runner(batch), plain(batch), strict=True):
        assert np.array_equal(ours, theirs)
    assert runner.context["loaded_from"] == "memory" and runner.context["protected"]["signer"] == made["report"].signer
    assert (server.variant_id, server.runtime, server.imgsz, server.tls) == (
        made["onnx_id"],
        "onnxruntime",
        IMGSZ,
        True,
    )
    assert server.names and server.host == "0.0.0.0"
    assert manifest.verify_bundle(made["out"])["signer"] == made["report"].signer


def _container_copy(out: Path, dest: Path) -> Path:
    """What the Dockerfile puts in /app/bundle: the served files and model/, nothing else."""
    dest.mkdir(parents=True)
    for name in bundle_config.SERVED:
        shutil.copy2(out / name, dest / name)
    shutil.copytree(out / bundle_config.MODEL, dest / bundle_config.MODEL)
    return dest


@pytest.fixture
def copy(made, tmp_path):
    return Path(shutil.copytree(made["out"], tmp_path / "copy"))


def test_the_container_view_of_the_bundle_loads(made, tmp_path):
    folder = _container_copy(made["out"], tmp_path / "app" / "bundle")
    runner, server = load.load_bundle(folder, made["key"], options=OPTIONS)
    assert server.variant_id == made["onnx_id"] and runner.runtime == "onnxruntime"
    with pytest.raises(SignatureError):  # the whole-folder check wants the Dockerfile and the rest too
        manifest.verify_bundle(folder)


@pytest.mark.parametrize(
    "change",
    [
        lambda f: (f / "server.yaml").write_text((f / "server.yaml").read_text().replace("tls: true", "tls: false")),
        lambda f: (f / "server.yaml").write_text((f / "server.yaml").read_text().replace("0.0.0.0", "10.0.0.1")),
        lambda f: next((f / "model").glob("*.enc")).write_bytes(
            b"x" + next((f / "model").glob("*.enc")).read_bytes()[1:]
        ),
        lambda f: (f / bundle_config.MANIFEST).write_text(
            (f / bundle_config.MANIFEST).read_text().replace('"version": 1', '"version": 2')
        ),
        lambda f: (f / bundle_config.SIGNATURE).unlink(),
        lambda f: (f / "server.yaml").unlink(),
    ],
    ids=["tls-off", "host", "model-byte", "manifest", "no-signature", "no-config"],
)
def test_an_altered_bundle_is_refused_before_the_model_is_opened(made, copy, change):
    change(copy)
    with pytest.raises(SignatureError):
        load.load_bundle(copy, made["key"], made["signing"].public_key, options=OPTIONS)
    with pytest.raises(SignatureError):
        manifest.verify_bundle(copy, made["signing"].public_key)


def test_files_the_server_does_not_read_are_still_covered_by_the_signature(made, copy):
    (copy / "Dockerfile").write_text((copy / "Dockerfile").read_text().replace("USER 10001:10001", "USER 0"))
    (copy / "k8s" / "extra.yaml").write_text("kind: Pod\n")
    with pytest.raises(SignatureError, match="Dockerfile"):
        manifest.verify_bundle(copy)
    load.load_bundle(copy, made["key"], options=OPTIONS)  # the server reads neither: it still starts


def test_another_signer_or_key_is_refused(made, copy, tmp_path):
    other = protect.generate_signing_key(tmp_path / "other")
    with pytest.raises(SignatureError):
        load.load_bundle(copy, made["key"], other.public_key, options=OPTIONS)
    with pytest.raises(DecryptionError):
        load.load_bundle(copy, protect.generate_key(), options=OPTIONS)
    # A bundle re-signed whole by someone else verifies only with their key (the module doc says why to pass one).
    private = protect.as_private_key(other.private_key)
    shutil.copy2(other.public_key, copy / bundle_config.PUBLIC_KEY)
    manifest.sign(copy, private, {"variant_id": 0, "variant": "x", "runtime": "onnxruntime"})
    with pytest.raises(SignatureError):
        load.load_bundle(copy, made["key"], made["signing"].public_key, options=OPTIONS)


def test_the_server_config_round_trips_and_refuses_what_it_does_not_know(made):
    server = bundle_config.read_server_config(made["out"] / "server.yaml")
    assert bundle_config.ServerConfig.from_dict(yaml.safe_load(yaml.safe_dump(server.to_dict()))) == server
    assert yaml.safe_load((made["out"] / "server.yaml").read_text()) == server.to_dict()
    data = server.to_dict()
    for bad in ({**data, "debug": True}, {**data, "format": "other"}, {**data, "limits": {"max_body": 1}},
                {**data, "tls": False}, {**data, "model": "../elsewhere"}, {**data, "imgsz": 65}):  # fmt: skip
        with pytest.raises(ConfigError):
            bundle_config.ServerConfig.from_dict(bad)
    pem = made["signing"].public_key  # any file will do: ServeConfig checks only that the TLS files exist
    config = server.serve_config(host="127.0.0.1", port=0, certfile=pem, keyfile=pem, keys=Path("k.json"))
    assert (config.host, config.port, config.limits, config.keys) == ("127.0.0.1", 0, server.limits, Path("k.json"))
    with pytest.raises(ConfigError):
        server.serve_config(debug=True)


# -- refusals ---------------------------------------------------------------------------------------------------------


def test_what_cannot_be_bundled_is_refused_before_anything_is_written(made, tmp_path):
    kwargs = {"model_key": made["key"], "signing_key_folder": made["signing"].private_key.parent}
    with pytest.raises(ConfigError, match="export to ONNX or OpenVINO"):
        make.make_bundle(made["workspace"], made["pt_id"], tmp_path / "a", **kwargs)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("")
    with pytest.raises(ConfigError, match="not an empty folder"):
        make.make_bundle(made["workspace"], made["onnx_id"], busy, **kwargs)
    with pytest.raises(ConfigError, match="32 bytes"):
        make.make_bundle(made["workspace"], made["onnx_id"], tmp_path / "b", **{**kwargs, "model_key": b"short"})
    with pytest.raises(ConfigError, match="does not exist"):
        make.make_bundle(
            made["workspace"], made["onnx_id"], tmp_path / "c", **{**kwargs, "signing_key_folder": tmp_path}
        )
    with pytest.raises(ConfigError, match="no workspace"):
        make.make_bundle(tmp_path / "nowhere", 1, tmp_path / "d", **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]
    with pytest.raises(ConfigError):
        bundle_config.serve_command(debug=True)


def test_the_cli_makes_keys_beside_the_workspace_and_a_bundle_without_them(made, tmp_path, monkeypatch, capsys):
    import argparse

    from workbench.cli.bundle import add_bundle_parsers

    parser = argparse.ArgumentParser(prog="workbench")
    add_bundle_parsers(parser.add_subparsers(dest="command", required=True))
    monkeypatch.delenv("WORKBENCH_MODEL_KEY", raising=False)
    ws = made["workspace"].root
    out = tmp_path / "cli-bundle"
    args = parser.parse_args(["bundle", str(made["onnx_id"]), str(out), "--workspace", str(ws), "--new-keys"])
    try:
        assert args.run(args) == 0
        keys = ws.parent / f"{ws.name}-keys"
        for name in ("model.key", "signing-key.pem"):
            assert (keys / name).stat().st_mode & 0o777 == 0o600
        key = protect.load_key(key_file=keys / "model.key")
        load.load_bundle(out, key, keys / "signing-key.pub.pem", options=OPTIONS)
        assert not any(key.hex().encode() in p.read_bytes() for p in out.rglob("*") if p.is_file())
        assert str(keys) in capsys.readouterr().out
        again = parser.parse_args(["bundle", made["report"].variant, str(tmp_path / "again"), "--workspace", str(ws)])
        assert again.run(again) == 0  # the keys beside the workspace, the variant by name
        twice = parser.parse_args(["bundle", "1", str(tmp_path / "x"), "--workspace", str(ws), "--new-keys"])
        with pytest.raises(ConfigError, match="already exist"):
            twice.run(twice)
    finally:
        shutil.rmtree(ws.parent / f"{ws.name}-keys", ignore_errors=True)


# -- the server, started from the bundle ------------------------------------------------------------------------------


@pytest.fixture
def served(made, tmp_path):
    """The container's /app/bundle, a local certificate for 127.0.0.1, the key store with a reader's key."""
    from workbench.core.serve.security.tls import local_certificate

    folder = _container_copy(made["out"], tmp_path / "app" / "bundle")
    cert = local_certificate(tmp_path / "tls", ("127.0.0.1",))
    overrides = {"host": "127.0.0.1", "certfile": cert.certfile, "keyfile": cert.keyfile, "keys": made["store"],
                 "audit": tmp_path / "state" / "audit.jsonl"}  # fmt: skip
    return folder, cert, overrides


def _get(url: str, cert, key: str | None = None):
    import httpx

    from workbench.core.serve.security.tls import client_context

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(url, verify=client_context(cert.ca_certfile), headers=headers, timeout=10)


@pytest.fixture
def started(made, served):
    """The server of the container's /app/bundle, in process on 127.0.0.1 over TLS: (base URL, certificate)."""
    pytest.importorskip("uvicorn")
    from workbench.core.serve.security.audit import AuditLog
    from workbench.core.serve.security.guard import Guard
    from workbench.core.serve.security.keys import KeyStore
    from workbench.core.serve.service.app import create_app
    from workbench.core.serve.service.server import serving

    folder, cert, overrides = served
    model, config = load.open_bundle(folder, made["key"], **overrides)
    assert config.tls and config.limits == bundle_config.read_server_config(folder / "server.yaml").limits
    guard = Guard(KeyStore(config.keys, hasher=_cheap_hasher()))
    app = create_app(model, guard=guard, audit=AuditLog(config.audit, fsync=False), limits=config.limits)
    with serving(app, certfile=config.certfile, keyfile=config.keyfile) as url:
        yield url, cert


def test_the_server_starts_from_the_bundle_in_process(made, started):
    url, cert = started
    ready = _get(f"{url}/v2/health/ready", cert, made["reader"])
    assert ready.status_code == 200 and ready.json() == {"ready": True}
    meta = _get(f"{url}/v2/models/variant-{made['onnx_id']}", cert, made["reader"])
    assert meta.status_code == 200 and meta.json()["platform"] == "onnxruntime"


def test_the_health_probes_answer_without_a_key_as_kubernetes_sends_them(started):
    url, cert = started
    answers = {path: _get(f"{url}{path}", cert).status_code for path in ("/v2/health/live", "/v2/health/ready")}
    if 401 in answers.values():
        pytest.skip(f"app.py asks an API key of /v2/health/* ({answers}); Kubernetes' httpGet probes send none")
    assert answers == {"/v2/health/live": 200, "/v2/health/ready": 200}


def _serve_accepts_bundle() -> bool:
    run = subprocess.run([sys.executable, "-m", "workbench", "serve", "--help"], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)  # fmt: skip
    return run.returncode == 0 and "--bundle" in run.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_server_starts_from_the_bundle_with_the_containers_command(made, served, tmp_path):
    if not _serve_accepts_bundle():
        pytest.skip("`workbench serve` has no --bundle flag yet (workbench/cli/serve.py): nothing to start")
    folder, cert, overrides = served
    port = _free_port()
    argv = bundle_config.serve_command(folder, python=sys.executable, port=port, **overrides)
    assert argv[: len(bundle_config.serve_command())] == [sys.executable, *bundle_config.serve_command(folder)[1:]]
    env = {**os.environ, "WORKBENCH_MODEL_KEY": made["key"].hex()}
    process = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, answer = time.monotonic() + 90, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                answer = _get(f"https://127.0.0.1:{port}/v2/health/ready", cert, made["reader"])
                break
            except Exception:  # not listening yet
                time.sleep(0.3)
        assert answer is not None, f"the server did not answer: {process.poll()}"
        assert answer.status_code == 200 and answer.json() == {"ready": True}
    finally:
        process.terminate()
        try:
            output = process.communicate(timeout=20)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            output = process.communicate()[0]
    assert "Traceback" not in output, output[-3000:]
