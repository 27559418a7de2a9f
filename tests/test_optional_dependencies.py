"""The NumPy tests need nothing beyond NumPy: with PyTorch, numba, Keras and onnx made unimportable, every
test not marked as needing one of them still collects (and a sample of them runs), and in CI a
missing test dependency fails instead of skipping."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
OPTIONAL = ("torch", "numba", "keras", "onnx")
NOT_OPTIONAL = " and ".join(f"not {m}" for m in OPTIONAL)
pytestmark = pytest.mark.slow  # each test runs pytest itself


@pytest.fixture(scope="module")
def blocked(tmp_path_factory) -> Path:
    """A folder that, first on the import path, makes each optional dependency fail to import."""
    d = tmp_path_factory.mktemp("blocked")
    for name in OPTIONAL:
        (d / name).mkdir()
        (d / name / "__init__.py").write_text(f"raise ImportError('{name} is made unimportable by the test')\n")
    return d


def pytest_in(*args: str, blocked_dir: Path | None = None, ci: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_XDIST_WORKER", "PYTEST_ADDOPTS")}
    if ci:
        env["CI"] = "true"
    if blocked_dir is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(blocked_dir), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", *args],
                          cwd=TESTS.parent, env=env, capture_output=True, text=True, timeout=600)


def collected(proc: subprocess.CompletedProcess) -> set[str]:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {line for line in proc.stdout.splitlines() if "::" in line}


def test_blocking_really_blocks(blocked):
    for name in OPTIONAL:
        r = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(blocked)))
        assert r.returncode == 1 and "made unimportable by the test" in r.stderr


def test_every_unmarked_test_collects_without_the_optional_dependencies(blocked):
    args = ("--collect-only", "-m", NOT_OPTIONAL, "tests")
    everything = collected(pytest_in(*args))
    without = collected(pytest_in(*args, blocked_dir=blocked))
    # a test missing here imports an optional dependency without carrying its marker
    assert without == everything, sorted(everything ^ without)[:20]
    assert len(everything) > 500  # the NumPy tests are most of the suite
    # and the marked ones are really left out: none of them is in the unmarked set
    marked = collected(pytest_in("--collect-only", "-m", "torch", "tests"))
    assert marked and not marked & everything


def test_numpy_tests_run_without_the_optional_dependencies(blocked):
    # modules that hold NumPy tests beside tests compared with PyTorch
    files = ["tests/model/test_lm_gradients.py", "tests/model/test_model_cells.py", "tests/core/test_cells.py"]
    r = pytest_in("-m", NOT_OPTIONAL, *files, blocked_dir=blocked)
    assert r.returncode == 0, r.stdout[-3000:]
    assert " passed" in r.stdout and " failed" not in r.stdout and " error" not in r.stdout


def test_in_ci_a_missing_test_dependency_fails_rather_than_skips(blocked):
    r = pytest_in("tests/test_optim.py", blocked_dir=blocked, ci=True)
    assert r.returncode != 0 and "torch is a test dependency that CI installs" in r.stdout
    r = pytest_in("tests/test_optim.py", blocked_dir=blocked)
    assert r.returncode in (0, 5) and "1 skipped" in r.stdout  # 5: the skipped module left no test to run
