"""`shipml step run`: steps run one at a time, chained through the artifact store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shipml.config import load_config
from shipml.errors import PipelineError
from shipml.pipeline.exchange import run_step
from tests.conftest import shipml

FAST = {"n_estimators": 5}


def _chain(config) -> dict[str, str]:
    done: dict[str, str] = {}
    for name, ups in [
        ("ingest", []),
        ("validate", ["ingest"]),
        ("split", ["validate"]),
        ("train", ["split"]),
        ("evaluate", ["train", "split"]),
        ("package", ["train", "split"]),
    ]:
        result = run_step(config, name, [done[u] for u in ups], params=FAST)
        assert result.status == "done", name
        done[name] = result.manifest
    return done


def test_the_template_pipeline_runs_step_by_step_through_an_object_store(project):
    """memory:// is a real fsspec filesystem that is not a local folder, as a bucket is."""
    config = load_config(project, environ={"SHIPML_ARTIFACTS_ROOT": "memory://shipml-test"})
    done = _chain(config)
    assert all(uri.startswith("memory://shipml-test/steps/manifests/") for uri in done.values())
    import fsspec

    fs = fsspec.filesystem("memory")
    package = json.loads(fs.cat_file(done["package"].removeprefix("memory://")))
    assert package["outputs"][0]["kind"] == "package"
    assert fs.exists(f"/shipml-test/steps/objects/{package['outputs'][0]['file']}/model.onnx")
    evaluate = json.loads(fs.cat_file(done["evaluate"].removeprefix("memory://")))
    assert evaluate["metrics"]["accuracy"] > 0.9
    # Same code, inputs and arguments: the manifest is there, the step is not run again.
    again = run_step(config, "split", [done["validate"]], params=FAST)
    assert again.status == "cached" and again.manifest == done["split"]


def test_wrong_or_missing_inputs_are_named(project):
    config = load_config(project)
    ingest = run_step(config, "ingest").manifest
    with pytest.raises(PipelineError, match="needs the outputs of ingest"):
        run_step(config, "validate")
    with pytest.raises(PipelineError, match="holds the outputs of step 'ingest', not of 'split'"):
        run_step(config, "train", [f"split={ingest}"])
    with pytest.raises(PipelineError, match="has no step 'trian'"):
        run_step(config, "trian")
    with pytest.raises(PipelineError, match="no step manifest"):
        run_step(config, "validate", [ingest.replace(".json", "0.json")])


def test_cli_step_run_chains_and_fails_like_run(project: Path):
    first = shipml("step", "run", "ingest", "--output-file", "out/ingest.txt", cwd=project)
    assert first.returncode == 0, first.stderr
    uri = first.stdout.strip()
    assert (project / "out" / "ingest.txt").read_text() == uri
    second = shipml("step", "run", "validate", "--input", uri, cwd=project)
    assert second.returncode == 0 and "step validate done" in second.stderr
    (project / "pipeline.py").write_text(
        (project / "pipeline.py")
        .read_text()
        .replace("    return df\n", "    raise RuntimeError('no good')\n", 1)
    )
    failed = shipml("step", "run", "validate", "--input", uri, cwd=project)
    assert failed.returncode == 6
    assert "step 'validate' failed: RuntimeError: no good" in failed.stderr
    assert "Traceback" not in failed.stderr
