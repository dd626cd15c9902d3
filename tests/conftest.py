"""Shared pytest setup and helpers. Run the suite with `make test` (or `python -m pytest -q tests`).

One torch thread per test process: CI has 2 cores and oversubscribed torch runs ~10x slower.
"""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)
# the environment of the scripts the tests run as subprocesses: one thread, offline, this checkout importable
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=ROOT)


@pytest.fixture(scope="module")
def lang_cache(tmp_path_factory):
    """A private instruction-embedding cache for one test module, seen by its subprocesses through ENV:
    the language model loads at most once per module, and a user's cache is never touched."""
    folder = str(tmp_path_factory.mktemp("lawm_cache"))
    old = os.environ.get("LAWM_CACHE")
    os.environ["LAWM_CACHE"] = ENV["LAWM_CACHE"] = folder
    yield folder
    for env in (os.environ, ENV):
        if old is None:
            env.pop("LAWM_CACHE", None)
        else:
            env["LAWM_CACHE"] = old


def read_episodes(path):
    """Every episode of a file, validated, as the dicts convert.write_episodes takes."""
    import h5py
    import episodes
    out, demos = [], episodes.scan_file(path)[1]  # validates first: a bad file fails with one line
    with h5py.File(path, "r") as f:
        for d in demos:
            ep = {"obs": {k: f[d["key"]]["obs"][k][()] for k in d["cameras"]} | d["lowdim"],
                  **{a: d[a] for a in ("instruction", "task", "task_type")}}
            if d["actions"] is not None:
                ep["actions"] = d["actions"]
            if d["seed"] >= 0:
                ep["seed"] = d["seed"]
            out.append(ep)
    return out


def require_libero():
    """Skip a LIBERO test module when the simulator stack (requirements-libero.txt) is not installed,
    unless LAWM_REQUIRE_LIBERO=1 (set by CI), where a missing simulator is a failure, not a skip."""
    import importlib.util
    if importlib.util.find_spec("libero") is None or importlib.util.find_spec("robosuite") is None:
        if os.environ.get("LAWM_REQUIRE_LIBERO") == "1":
            raise RuntimeError("LAWM_REQUIRE_LIBERO=1 but the LIBERO stack is not installed: pip install -r requirements-libero.txt")
        pytest.skip("LIBERO simulator not installed (pip install -r requirements-libero.txt)", allow_module_level=True)
