"""The seams the layout promises, checked on the source: one reader of the file, inference apart from training.

Static checks (every import, function-level ones included, found with ast),
so they fail the moment a change crosses a seam, whatever the tests run.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from conftest import REPO

PRODUCT = ("galaxyprep", "galaxytrain")


def _sources(*roots: str) -> list[Path]:
    """The packages' modules, and the bench's scripts (not what the benches leave in bench/out)."""
    return sorted(p for root in roots for p in ((REPO / root).glob("*.py") if root == "bench"
                                                 else (REPO / root).rglob("*.py")))


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports anywhere in it, relative imports resolved (`from . import x` gives pkg.x)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


#: The Python API's module: `import galaxytrain` loads it, but each of its functions imports what it
#: needs when called (fit: training; load, predict, score: inference only, which
#: test_inference_really_runs_without_training checks at run time), so its imports are not followed.
_LAZY_SURFACE = {"galaxytrain.api"}


def _closure(start: str) -> set[str]:
    """The galaxytrain modules `start` imports, directly or through others (packages' __init__ included)."""
    files = {_module_name(p): p for p in _sources("galaxytrain")}
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in files:
            continue
        seen.add(name)
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # importing a.b.c runs a and a.b
        if name not in _LAZY_SURFACE:
            todo.extend(m for m in _imports(files[name]) if m.startswith("galaxytrain"))
    return seen


def test_inference_evaluation_data_and_models_never_import_training():
    for start in ("galaxytrain.inference", "galaxytrain.evaluation", "galaxytrain.data", "galaxytrain.models",
                  "galaxytrain.run_dir"):
        crossing = sorted(m for m in _closure(start) if m.startswith("galaxytrain.training"))
        assert not crossing, f"{start} imports {crossing}"


def test_inference_really_runs_without_training(make_galaxy_file, tmp_path):
    """The same, at run time: a prediction leaves no training module in sys.modules."""
    import keras


    data = make_galaxy_file(n=10, size=24, labels=False)
    model = keras.Sequential([keras.Input((24, 24, 3)), keras.layers.Flatten(), keras.layers.Dense(37)])
    model.save(tmp_path / "m.keras")
    code = ("import sys, galaxytrain; from galaxytrain.inference import predict_file, load_run; "
            f"r = load_run({str(tmp_path / 'm.keras')!r}); ids, p = predict_file(r.model, {str(data)!r}, tta=2); "
            "assert p.shape == (10, 37); "
            f"found = galaxytrain.load({str(tmp_path / 'm.keras')!r}).predict({str(data)!r}, tta=2); "
            "assert found.mean.shape == (10, 37); "
            "print(sorted(m for m in sys.modules if m.startswith('galaxytrain.training')))")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"



def test_galaxytrain_uses_galaxyprep_only_through_its_public_surface():
    """What galaxyprep/__init__ exports, and the synth subpackage through its own __init__."""
    for path in _sources("galaxytrain", "bench"):
        private = sorted(m for m in _imports(path) if m.startswith("galaxyprep.")
                         and m.split(".")[1] not in _public_names()
                         and not (m.split(".")[1] == "synth" and len(m.split(".")) <= 3
                                  and (len(m.split(".")) == 2 or m.split(".")[2] in _synth_names())))
        if path.parts[-2] == "bench" and path.name in ("bench_build.py", "bench_decoders.py", "_common.py"):
            continue  # the build's own benches time its internals
        assert not private, f"{path.relative_to(REPO)} imports {private}"


def _synth_names() -> set[str]:
    import galaxyprep.synth

    return set(galaxyprep.synth.__all__)


def _public_names() -> set[str]:
    import galaxyprep

    return set(galaxyprep.__all__)


def test_only_the_format_modules_open_hdf5_or_name_its_attributes():
    allowed = {REPO / "galaxyprep" / "galaxy_file.py", REPO / "galaxyprep" / "direct_io.py",
               REPO / "galaxytrain" / "inference" / "predictions_file.py"}  # the predictions' own format
    for path in _sources(*PRODUCT, "bench"):
        if path in allowed:
            continue
        text = path.read_text(encoding="utf-8")
        assert not any(m == "h5py" or m.startswith("h5py.") for m in _imports(path)), \
            f"{path.relative_to(REPO)} imports h5py: read the file through galaxyprep.GalaxyFile"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Attribute) and node.attr == "attrs":
                raise AssertionError(f"{path.relative_to(REPO)}:{node.lineno} reads HDF5 attributes directly")


def test_the_choice_lists_have_one_home():
    """A literal list of augment, head, loss or schedule names anywhere but choices.py is a second home."""
    lists = {("none", "dihedral", "rotate"), ("sigmoid", "tree"), ("bce", "mse"), ("constant", "cosine", "step")}
    for path in _sources("galaxytrain"):
        if path.name == "choices.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Tuple, ast.List)) and all(isinstance(e, ast.Constant) for e in node.elts):
                values = tuple(e.value for e in node.elts)
                assert values not in lists, f"{path.relative_to(REPO)}:{node.lineno} restates {values}"
