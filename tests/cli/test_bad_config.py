"""A table of bad configurations and hostile inputs: each one gives one message with a hint
and its documented exit code, never a traceback (without --debug).

The command runs in process (``shipml.cli.main``) so the table stays quick; an exception
that escapes ``main`` is a traceback and fails the test. No server is started: a case that
would reach ``uvicorn.run`` fails."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import onnx
import pytest
from onnx import numpy_helper
from onnx.external_data_helper import set_external_data
from sklearn.datasets import load_breast_cancer
from sklearn.neural_network import MLPClassifier

from shipml.cli import main
from shipml.files import sha256_file
from shipml.model import build_package, model_input
from shipml.templates import create_project


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X = X.iloc[:, :4]
    model = MLPClassifier((4,), max_iter=100, random_state=0).fit(model_input(X), y)
    return build_package(model, X, y, path=tmp_path_factory.mktemp("pkg") / "cancer").path


@pytest.fixture(scope="module")
def blackhole() -> Iterator[int]:
    """A loopback port that accepts connections and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield sock.getsockname()[1]


@dataclass
class Case:
    argv: list[str]
    code: int
    says: str
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path, Path], None] | None = None  # (project, package)
    # Modules made unimportable for the case (an extra the dev install has, e.g. s3fs).
    absent: tuple[str, ...] = ()


def _key_folder(project: Path, package: Path) -> None:
    (project / "keydir").mkdir()


def _garbage_key(project: Path, package: Path) -> None:
    (project / "bad.pem").write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n")


def _resign(folder: Path) -> None:
    manifest = json.loads((folder / "package.json").read_text())
    manifest["files"] = {name: sha256_file(folder / name) for name in manifest["files"]}
    (folder / "package.json").write_text(json.dumps(manifest))


def _not_onnx(project: Path, package: Path) -> None:
    shutil.copytree(package, project / "bad-pkg")
    (project / "bad-pkg" / "model.onnx").write_bytes(b"this is not a graph")
    _resign(project / "bad-pkg")


def _reads_the_signing_key(project: Path, package: Path) -> None:
    folder = project / "bad-pkg"
    shutil.copytree(package, folder)
    (project / ".shipml/audit").mkdir(parents=True, exist_ok=True)
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (project / ".shipml/audit/signing.key").write_bytes(pem * 4)  # a real key, as served
    proto = onnx.load_model(str(folder / "model.onnx"))
    tensor = max(proto.graph.initializer, key=lambda t: numpy_helper.to_array(t).size)
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor), tensor.name))
    set_external_data(tensor, location=".shipml/audit/signing.key", length=len(tensor.raw_data))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    onnx.save_model(proto, str(folder / "model.onnx"))
    _resign(folder)


def _gzip_bomb(project: Path, package: Path) -> None:
    with gzip.open(project / "bomb.csv.gz", "wb", compresslevel=6) as fh:
        fh.write(b"a\n")
        for _ in range(11):
            fh.write(b"1\n" * 1_000_000)  # 11 M rows: past the default max_rows


def _huge_field(project: Path, package: Path) -> None:
    (project / "wide.csv").write_bytes(b"a,b\n1," + b"x" * 3_000_000 + b"\n")


def _small_max_bytes(project: Path, package: Path) -> None:
    toml = project / "shipml.toml"
    toml.write_text(toml.read_text() + "\n[data]\nmax_bytes = 1000\n")


def _allowed_host_with_a_path(project: Path, package: Path) -> None:
    toml = project / "shipml.toml"
    toml.write_text(toml.read_text() + '\n[http]\nallowed_hosts = ["models.acme.test/x"]\n')


ADD = ["data", "add", "penguins", "data/penguins.csv"]
SERVE = ["serve", "{package}", "--port", "0"]
CASES = {
    # -- configuration -----------------------------------------------------------------
    "artifacts root under /proc": Case(
        ADD, 5, "cannot write to the artifact store", {"SHIPML_ARTIFACTS_ROOT": "/proc/x"}
    ),
    "artifacts root not writable": Case(
        ADD, 5, "cannot write to the artifact store", {"SHIPML_ARTIFACTS_ROOT": "/sys/x"}
    ),
    "artifacts on s3 without s3fs": Case(
        ADD,
        5,
        "cannot open the artifact store s3://",
        {"SHIPML_ARTIFACTS_ROOT": "s3://b/x"},
        absent=("s3fs",),
    ),
    "artifacts on s3 without credentials": Case(
        ADD, 5, "cannot reach the artifact store s3://", {"SHIPML_ARTIFACTS_ROOT": "s3://b/x"}
    ),
    "signing key is a folder": Case(
        SERVE, 10, "signing key", {"SHIPML_AUDIT_SIGNING_KEY": "keydir"}, _key_folder
    ),
    "signing key is garbage": Case(
        SERVE,
        10,
        "cannot read the audit signing key",
        {"SHIPML_AUDIT_SIGNING_KEY": "bad.pem"},
        _garbage_key,
    ),
    "audit path cannot be created": Case(
        SERVE, 10, "cannot open the audit log", {"SHIPML_AUDIT_PATH": "/proc/x/audit.db"}
    ),
    "trace sampling ratio not a number": Case(
        SERVE,
        3,
        "OTEL_TRACES_SAMPLER_ARG='half' is not a number",
        {"OTEL_TRACES_EXPORTER": "console", "OTEL_TRACES_SAMPLER_ARG": "half"},
    ),
    "monitor quality_alpha above 1": Case(
        ["monitor"], 3, "monitor.quality_alpha", {"SHIPML_MONITOR_QUALITY_ALPHA": "2"}
    ),
    "monitor quality_alpha not a number": Case(
        ["monitor"], 3, "monitor.quality_alpha", {"SHIPML_MONITOR_QUALITY_ALPHA": "nan"}
    ),
    "allowed host that is not a host name": Case(
        SERVE, 3, "http.allowed_hosts", setup=_allowed_host_with_a_path
    ),
    "unknown trace exporter": Case(
        SERVE, 3, "unknown trace exporter 'zipkin'", {"OTEL_TRACES_EXPORTER": "zipkin"}
    ),
    "tracking server that never answers": Case(
        ["models", "ls"],
        7,
        "http://127.0.0.1:{blackhole}",
        {"SHIPML_TRACKING_URI": "http://127.0.0.1:{blackhole}", "SHIPML_TRACKING_TIMEOUT_S": "1"},
    ),
    # -- model packages ----------------------------------------------------------------
    "model.onnx that is not ONNX": Case(
        ["serve", "bad-pkg", "--port", "0"], 8, "not a readable ONNX model", setup=_not_onnx
    ),
    "external data naming the signing key": Case(
        ["serve", "bad-pkg", "--port", "0"],
        8,
        "not a file of the package's manifest",
        setup=_reads_the_signing_key,
    ),
    # -- data sources ------------------------------------------------------------------
    "chained zip:// URI": Case(
        ["data", "add", "z", "zip://x.csv::file:///tmp/a.zip"], 5, "unsupported data source"
    ),
    "query string ending in .csv": Case(
        ["data", "add", "z", "s3://bucket/notes.txt?name=.csv"], 5, "cannot tell the format"
    ),
    "web source while http is off": Case(
        ["data", "add", "z", "https://example.org/x.csv"], 5, "reading data from the web is off"
    ),
    "s3 source without s3fs": Case(
        ["data", "add", "z", "s3://b/x.csv"], 5, "install s3fs", absent=("s3fs",)
    ),
    "gzip bomb": Case(
        ["data", "add", "z", "bomb.csv.gz"], 5, "more than 10,000,000 rows", setup=_gzip_bomb
    ),
    "a 3 MB field": Case(
        ["data", "add", "z", "wide.csv"], 5, "line longer than", setup=_huge_field
    ),
    "over [data] max_bytes": Case(ADD, 5, "more than 1,000 bytes", setup=_small_max_bytes),
    "unknown --format": Case([*ADD, "--format", "xlsx"], 5, "unknown format"),
    "unknown --on-error": Case(
        ["predict", "{package}", "data/penguins.csv", "-o", "o.csv", "--on-error", "maybe"],
        5,
        "unknown --on-error 'maybe'",
    ),
    "predict a file that lacks the features": Case(
        ["predict", "{package}", "data/penguins.csv", "-o", "o.csv"], 5, "missing feature"
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_configuration_is_a_clear_error(
    name, tmp_path, monkeypatch, capsys, package, blackhole
):
    case = CASES[name]
    project = create_project(tmp_path / "p", "penguins")
    if case.setup is not None:
        case.setup(project, package)
    monkeypatch.chdir(project)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value.format(blackhole=blackhole))
    for module in case.absent:
        monkeypatch.setitem(sys.modules, module, None)  # `import s3fs` raises ImportError
        for protocol in ("s3", "s3a"):  # and fsspec forgets a class it loaded before
            monkeypatch.delitem(sys.modules["fsspec.registry"]._registry, protocol, raising=False)
    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)  # no credentials: the case's own, never the machine's
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no wait on a metadata server

    def no_server(*args: object, **kwargs: object) -> None:
        raise AssertionError("the command would have started a server")

    monkeypatch.setattr("uvicorn.run", no_server)
    argv = [a.format(package=package) for a in case.argv]
    started = time.monotonic()
    code = main(argv)
    out = capsys.readouterr()
    text = " ".join((out.err + out.out).split())
    assert code == case.code, text
    assert case.says.format(blackhole=blackhole) in text
    assert "hint:" in text and "Traceback" not in text
    # A server that cannot start does not first announce that it is serving.
    assert "V2 at /v2/models/" not in text
    assert time.monotonic() - started < 10
