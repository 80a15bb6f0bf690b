"""`shipml gateway` from shipml.toml, steered by `shipml rollout`, in a real project."""

import json
import os
import subprocess
import sys

from shipml.audit import AuditLog
from shipml.config import load_config
from shipml.tracking import Registry, tracker_for
from tests.conftest import shipml_here, wait_until_ready
from tests.serving.conftest import free_port


def test_policy_from_config_status_and_forced_promotion_moves_the_registry(project):
    for n in ("5", "6"):  # two registered versions
        assert shipml_here("run", "-p", f"n_estimators={n}", cwd=project).returncode == 0
    port = free_port()
    toml = project / "shipml.toml"
    template = toml.read_text()
    toml.write_text(
        template[: template.index("[rollout]")]  # the template's own canary section, replaced
        + f"""
[rollout]
port = {port}
admin_token = "t0ken"
mode = "ab"
champion = "v1=penguins/1"
challengers = ["v2=penguins/2"]
weights = {{ v1 = 50, v2 = 50 }}
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHIPML_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipml", "gateway"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_until_ready(port)
        gateway_url = f"http://127.0.0.1:{port}"
        status = shipml_here("rollout", "status", "--gateway", gateway_url, cwd=project)
        assert status.returncode == 0, status.stderr
        assert "mode ab" in status.stdout and "champion v1" in status.stdout
        as_json = shipml_here("rollout", "status", "--gateway", gateway_url, "--json", cwd=project)
        assert as_json.returncode == 0, as_json.stderr
        data = json.loads(as_json.stdout)
        assert data["mode"] == "ab" and data["champion"] == "v1"
        assert data["analysis"]["variants"]["v1"]["requests"] == 0  # nothing sent yet
        refused = shipml_here("rollout", "promote", "--gateway", gateway_url, cwd=project)
        assert refused.returncode != 0 and "promotion refused" in refused.stderr
        assert "labelled predictions" in refused.stderr
        forced = shipml_here(
            "rollout",
            "promote",
            "--gateway",
            gateway_url,
            "--force",
            "--reason",
            "ship the fix",
            cwd=project,
        )
        assert forced.returncode == 0, forced.stderr
        assert "champion is now v2" in forced.stdout
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    config = load_config(project)
    assert Registry(tracker_for(config)).resolve("penguins@champion").version == "2"
    events = AuditLog(project / ".shipml" / "audit" / "audit.db").find_events()
    promotion = [e for e in events if e["event"] == "promotion"][-1]
    assert promotion["registry"] == "penguins@champion -> version 2"
    override = [e for e in events if e["event"] == "manual override"][-1]
    assert "ship the fix" in override["reason"]
