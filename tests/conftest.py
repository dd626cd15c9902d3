"""Shared pytest setup. Run the suite with `make test` (or `python -m pytest -q tests`).

One torch thread per test process: CI has 2 cores and oversubscribed torch runs ~10x slower.
"""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import torch  # noqa: E402

torch.set_num_threads(1)


def require_libero():
    """Skip a LIBERO test module when the simulator stack (requirements-libero.txt) is not installed,
    unless LAWM_REQUIRE_LIBERO=1 (set by CI), where a missing simulator is a failure, not a skip."""
    import importlib.util
    import pytest
    if importlib.util.find_spec("libero") is None or importlib.util.find_spec("robosuite") is None:
        if os.environ.get("LAWM_REQUIRE_LIBERO") == "1":
            raise RuntimeError("LAWM_REQUIRE_LIBERO=1 but the LIBERO stack is not installed: pip install -r requirements-libero.txt")
        pytest.skip("LIBERO simulator not installed (pip install -r requirements-libero.txt)", allow_module_level=True)
