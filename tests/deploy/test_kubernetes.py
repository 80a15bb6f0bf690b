"""`--target kubernetes`. No cluster runs here or in CI, so: the real kubectl without a
context must give a clear error; the apply → rollout sequence is checked against a fake
kubectl on PATH that records its arguments (the only fake: it stands for a cluster)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.conftest import shipml
from tests.deploy.conftest import require

FAKE = """#!{python}
import json, sys
log = {log!r}
with open(log, "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
args = sys.argv[1:]
if args[:2] == ["config", "current-context"]:
    print("test-cluster")
elif args[0] == "kustomize":
    import subprocess
    sys.exit(subprocess.call([{kubectl!r}, *args]))
elif args[0] == "apply":
    print("deployment.apps/x serverside-applied")
elif args[0] == "rollout":
    print(f'{{args[1]}} successfully rolled out')
elif args[0] == "delete":
    print("namespace \\"penguins-staging\\" deleted")
"""


def _fake_kubectl(tmp_path: Path) -> tuple[dict[str, str], Path]:
    real = require("kubectl")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "kubectl.log"
    script = bin_dir / "kubectl"
    script.write_text(FAKE.format(python=sys.executable, log=str(log), kubectl=real))
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, log


def test_without_a_kube_context_the_error_says_what_to_do(deploy_project: Path, tmp_path):
    require("kubectl")
    empty = tmp_path / "kubeconfig"
    empty.write_text("")
    env = {"KUBECONFIG": str(empty)}
    done = shipml(
        "deploy", "apply", "--env", "dev", "--target", "kubernetes", cwd=deploy_project, env=env
    )
    assert done.returncode == 13, done.stderr
    assert "kubectl has no current context" in done.stderr and "Traceback" not in done.stderr


def test_server_side_apply_then_rollouts_then_down(deploy_project: Path, tmp_path):
    env, log = _fake_kubectl(tmp_path)
    up = shipml(
        "deploy", "apply", "--env", "staging", "--target", "kubernetes", cwd=deploy_project, env=env
    )
    assert up.returncode == 0, up.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    applied = next(c for c in calls if c[0] == "apply")
    overlay = deploy_project / ".shipml" / "deploy" / "staging" / "overlays" / "staging"
    assert applied == ["apply", "--server-side", "--field-manager=shipml", "-k", str(overlay)]
    rollouts = [c[2] for c in calls if c[0] == "rollout"]
    assert set(rollouts) == {
        "deployment/penguins-champion",
        "deployment/penguins-challenger",
        "deployment/penguins-gateway",
        "deployment/penguins-mlflow",
        "statefulset/penguins-postgres",
    }
    assert all(c[3:5] == ["-n", "penguins-staging"] for c in calls if c[0] == "rollout")
    assert "context test-cluster" in up.stderr and "staging is up" in up.stdout
    # The project's own deploy/ tree is not touched by an apply.
    assert not (deploy_project / "deploy").exists()
    log.write_text("")
    dry = shipml(
        "deploy",
        "apply",
        "--env",
        "prod",
        "--target",
        "kubernetes",
        "--dry-run",
        cwd=deploy_project,
        env=env,
    )
    assert dry.returncode == 0, dry.stderr
    assert "--dry-run=server" in log.read_text() and "rollout" not in log.read_text()
    down = shipml(
        "deploy", "down", "--env", "staging", "--target", "kubernetes", cwd=deploy_project, env=env
    )
    assert down.returncode == 0 and "delete" in log.read_text()
