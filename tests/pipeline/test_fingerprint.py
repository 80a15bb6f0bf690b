import importlib.util
import os
import sys
from pathlib import Path

import pytest

from shipml.pipeline.fingerprint import Fingerprinter


@pytest.fixture(autouse=True)
def _no_bytecode_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests rewrite a module within the second keeping its size and import it
    again with their own loader: a .pyc written by the first import (mtime in whole
    seconds, and size) would hand back the old code. shipml's own loader never reads
    one for a project module (tests/pipeline/test_loading.py)."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)


def load(root: Path):
    for name in ("pipe_mod", "helper_mod", "deep_mod", "utils", "utils.checks"):
        sys.modules.pop(name, None)
    sys.path.insert(0, str(root))
    try:
        spec = importlib.util.spec_from_file_location("pipe_mod", root / "pipe_mod.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["pipe_mod"] = module
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(root))


def write_project(root: Path, deep: str = "X = 1", constant: int = 3) -> None:
    (root / "deep_mod.py").write_text(deep + "\n")
    (root / "helper_mod.py").write_text(
        "import deep_mod\n\ndef helper(v):\n    return v + deep_mod.X\n"
    )
    (root / "pipe_mod.py").write_text(
        "import helper_mod\n"
        f"LIMIT = {constant}\n"
        "def local(v):\n    return v * 2\n"
        "def ingest(v):\n    return local(v)\n"
        "def train(v):\n    return helper_mod.helper(v)\n"
        "def evaluate(v):\n    return v < LIMIT\n"
        "def lazy(v):\n    from helper_mod import helper\n    return helper(v)\n"
    )


def prints(root: Path) -> dict[str, str]:
    mod = load(root)
    fp = Fingerprinter(root)
    return {
        name: fp.fingerprint(getattr(mod, name))[0]
        for name in ("ingest", "train", "evaluate", "lazy")
    }


def test_editing_a_helper_module_changes_only_the_steps_that_import_it(tmp_path):
    write_project(tmp_path)
    before = prints(tmp_path)
    write_project(tmp_path, deep="X = 2")  # two imports away from the step
    after = prints(tmp_path)
    assert after["train"] != before["train"]
    assert after["lazy"] != before["lazy"]  # imported inside the function body
    assert after["ingest"] == before["ingest"] and after["evaluate"] == before["evaluate"]


def test_same_module_functions_and_constants_count(tmp_path):
    write_project(tmp_path)
    before = prints(tmp_path)
    write_project(tmp_path, constant=4)
    after = prints(tmp_path)
    assert after["evaluate"] != before["evaluate"] and after["ingest"] == before["ingest"]
    text = (tmp_path / "pipe_mod.py").read_text().replace("v * 2", "v * 3")
    (tmp_path / "pipe_mod.py").write_text(text)
    assert prints(tmp_path)["ingest"] != before["ingest"]


def test_files_used_are_reported(tmp_path):
    write_project(tmp_path)
    mod = load(tmp_path)
    _, files = Fingerprinter(tmp_path).fingerprint(mod.train)
    assert files == ["deep_mod.py", "helper_mod.py"]


def test_packages_class_methods_and_decorated_helpers_count(tmp_path):
    import functools  # noqa: F401  (used by the generated module)

    (tmp_path / "utils").mkdir()
    (tmp_path / "utils" / "__init__.py").write_text("")
    (tmp_path / "utils" / "checks.py").write_text("LIMIT = 1\n")
    (tmp_path / "pipe_mod.py").write_text(
        "import functools\nimport utils.checks\n"
        "def helper(v):\n    return v + 1\n"
        "@functools.cache\ndef cached(v):\n    return v * 2\n"
        "class Model:\n    def run(self, v):\n        return helper(v)\n"
        "def uses_package(v):\n    return v < utils.checks.LIMIT\n"
        "def uses_class(v):\n    return Model().run(v)\n"
        "def uses_decorated(v):\n    return cached(v)\n"
    )

    def prints():
        mod = load(tmp_path)
        fp = Fingerprinter(tmp_path)
        return {
            n: fp.fingerprint(getattr(mod, n))[0]
            for n in ("uses_package", "uses_class", "uses_decorated")
        }

    before = prints()
    (tmp_path / "utils" / "checks.py").write_text("LIMIT = 2\n")
    after = prints()
    assert after["uses_package"] != before["uses_package"]
    text = (tmp_path / "pipe_mod.py").read_text()
    (tmp_path / "pipe_mod.py").write_text(text.replace("v + 1", "v + 2"))
    assert prints()["uses_class"] != after["uses_class"]
    text = (tmp_path / "pipe_mod.py").read_text()
    (tmp_path / "pipe_mod.py").write_text(text.replace("v * 2", "v * 3"))
    assert prints()["uses_decorated"] != after["uses_decorated"]


def test_module_level_objects_and_partials_count(tmp_path):
    def write(depth: int, factor: int, size: int = 3) -> None:
        (tmp_path / "pipe_mod.py").write_text(
            "import functools\nimport logging\nfrom dataclasses import dataclass\n"
            "import numpy as np\n"
            "@dataclass\nclass Cfg:\n    depth: int\n"
            f"CFG = Cfg(depth={depth})\n"
            "def scale(v, factor):\n    return v * factor\n"
            f"SCALE = functools.partial(scale, factor={factor})\n"
            f"WEIGHTS = np.arange({size}) / 7\n"
            "log = logging.getLogger('pipe_mod')\n"
            "def uses_object(v):\n    return v + CFG.depth\n"
            "def uses_partial(v):\n    return SCALE(v)\n"
            "def uses_array(v):\n    return v * WEIGHTS\n"
            "def uses_logger(v):\n    log.info('x')\n    return v\n"
        )

    def prints() -> dict[str, str]:
        mod = load(tmp_path)
        fp = Fingerprinter(tmp_path)
        names = ("uses_object", "uses_partial", "uses_array", "uses_logger")
        return {n: fp.fingerprint(getattr(mod, n))[0] for n in names}

    write(depth=3, factor=2)
    before = prints()
    assert prints() == before  # deterministic
    write(depth=4, factor=2)
    after = prints()
    assert after["uses_object"] != before["uses_object"]
    assert after["uses_partial"] == before["uses_partial"]
    assert after["uses_logger"] == before["uses_logger"]  # its logger did not change
    write(depth=4, factor=3)
    assert prints()["uses_partial"] != after["uses_partial"]
    write(depth=4, factor=3, size=5000)  # an array whose repr is cut short ('...')
    big = prints()["uses_array"]
    write(depth=4, factor=3, size=5001)
    assert prints()["uses_array"] != big


def test_closure_variables_and_the_function_a_decorator_wraps_count(tmp_path):
    # A step made by a factory (its k lives in the closure, the call `make(2)` is outside
    # the step's source) and a step under a functools.wraps decorator (the wrapper's code
    # only names `f`, a closure variable) kept their fingerprints when what they ran changed
    def write(k: int, limit: int) -> None:
        (tmp_path / "pipe_mod.py").write_text(
            "import functools\n"
            "def make(k):\n    def scaled(v):\n        return v * k\n    return scaled\n"
            "def logged(f):\n    @functools.wraps(f)\n"
            "    def wrapper(*a, **kw):\n        return f(*a, **kw)\n    return wrapper\n"
            f"LIMIT = {limit}\n"
            "def check(v):\n    return v < LIMIT\n"
            "@logged\ndef decorated(v):\n    return check(v)\n"
            f"factory_made = make({k})\n"
        )

    def prints() -> dict[str, str]:
        mod = load(tmp_path)
        fp = Fingerprinter(tmp_path)
        return {n: fp.fingerprint(getattr(mod, n))[0] for n in ("factory_made", "decorated")}

    write(k=2, limit=1)
    before = prints()
    assert prints() == before  # deterministic
    write(k=3, limit=1)
    after = prints()
    assert after["factory_made"] != before["factory_made"]
    assert after["decorated"] == before["decorated"]
    write(k=3, limit=2)
    assert prints()["decorated"] != after["decorated"]


def test_a_list_or_dict_whose_repr_hides_its_content_counts_by_its_file(tmp_path):
    # FUNCS showed "<function scale at 0x7f...>": a new key every run, the cache never hit;
    # WEIGHTS showed "[array([0, 1, ..., 1999])]": an edit in its middle kept the key
    def write(middle: int) -> None:
        (tmp_path / "pipe_mod.py").write_text(
            "import numpy as np\n"
            "def scale(v):\n    return v * 2\n"
            "FUNCS = {'scale': scale}\n"
            f"WEIGHTS = [np.concatenate([np.arange(1000), [{middle}], np.arange(1001, 2000)])]\n"
            "def uses_funcs(v):\n    return FUNCS['scale'](v)\n"
            "def uses_weights(v):\n    return v * WEIGHTS[0]\n"
        )

    def prints() -> dict[str, str]:
        mod = load(tmp_path)
        fp = Fingerprinter(tmp_path)
        return {n: fp.fingerprint(getattr(mod, n))[0] for n in ("uses_funcs", "uses_weights")}

    write(middle=1000)
    before = prints()
    assert prints() == before  # the same code, the same key: the cache can hit
    write(middle=7)
    assert prints()["uses_weights"] != before["uses_weights"]


def test_a_set_of_strings_has_one_fingerprint_in_every_process(tmp_path):
    # its repr's order follows the process's hash seed: a new cache key every run
    import subprocess
    import sys

    (tmp_path / "pipe_mod.py").write_text(
        "LABELS = {'adelie', 'gentoo', 'chinstrap', 'emperor'}\n"
        "NESTED = {'a': [frozenset({'x', 'y', 'z'})]}\n"
        "def uses(v):\n    return v in LABELS and NESTED\n"
    )
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "import pipe_mod; from shipml.pipeline.fingerprint import Fingerprinter;"
        "print(Fingerprinter(Path(sys.argv[1])).fingerprint(pipe_mod.uses)[0])"
    )
    prints = {
        subprocess.run(
            [sys.executable, "-c", code, str(tmp_path)],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in (1, 2, 3, 4)
    }
    assert len(prints) == 1
