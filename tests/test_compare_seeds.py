"""The comparison's statistics with several seeds: pairing by seed, t-intervals, Wilson, the decision rule.

    python -m pytest -q tests/test_compare_seeds.py

A file of its own so that `make test` (two workers, one file each at a time) runs it beside test_compare.py.
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")


def test_compare_seeds_pairing_interval_and_decision_rule(tmp_path):
    """Three seeds of two arms run two at a time (--seeds, --arms, --jobs); then planted success counts check
    the pairing by seed, the t-interval over seeds, the pooled Wilson interval and the decision rule
    against numbers worked out by hand (t_{0.975, 2 df} = 4.303; Wilson 1/60 = [0.30%, 8.86%])."""
    cmd = [sys.executable, os.path.join(ROOT, "compare.py"), "--quick", "--arms", "scratch,oracle", "--seeds", "3",
           "--jobs", "2", "--out", "cmp"]
    r = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "cmp" / "oracle")) == ["seed0", "seed1", "seed2"]

    def plant(arm, counts):  # successes per seed out of the quick run's 20 episodes
        for s, k in enumerate(counts):
            path = tmp_path / "cmp" / "units" / f"{arm}_seed{s}.json"  # the unit's record: the tables read only it
            res = json.loads(path.read_text())
            assert res["success"]["episodes"] == 20
            res["success"] |= {"successes": k, "success_rate": k / 20}
            path.write_text(json.dumps(res))

    def aggregate():
        r = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        return json.load(open(tmp_path / "cmp" / "compare.json"))["results"]

    # paired differences 0.30, 0.25, 0.35 (mean 0.30, sd 0.05): helps. Paired by sorting instead of by seed
    # they would be 0.30, 0.30, 0.30 (no spread), so the interval tells the pairing.
    plant("scratch", [0, 2, 1])
    plant("oracle", [6, 7, 8])
    out = aggregate()
    s, w = out["scratch"], out["oracle"]
    assert s["per_seed"] == [0.0, 0.1, 0.05] and w["per_seed"] == [0.3, 0.35, 0.4]
    h = 4.303 * 0.05 / 3 ** 0.5
    assert abs(w["diff_vs_scratch"] - 0.30) < 1e-9
    assert abs(w["diff_ci95"][0] - (0.30 - h)) < 1e-3 and abs(w["diff_ci95"][1] - (0.30 + h)) < 1e-3
    assert w["helps"] is True
    assert abs(w["success"] - 0.35) < 1e-9 and abs(w["ci95_seeds"][1] - (0.35 + h)) < 1e-3
    plant("scratch", [1, 0, 0])  # pooled 1 of 60 episodes: Wilson [0.30%, 8.86%]
    s = aggregate()["scratch"]
    assert abs(s["ci95_episodes"][0] - 0.00295) < 5e-5 and abs(s["ci95_episodes"][1] - 0.08855) < 5e-5
    # a mean difference above 10 points whose interval includes 0: does not help
    plant("oracle", [9, 0, 0])  # differences 0.40, 0.0, 0.0 (scratch now 1, 0, 0)
    w = aggregate()["oracle"]
    assert w["helps"] is False and w["diff_vs_scratch"] > 0.13 and w["diff_ci95"][0] < 0
    # an interval that excludes 0 but a mean below 10 points: does not help
    plant("oracle", [2, 1, 1])  # differences 0.05, 0.05, 0.05
    w = aggregate()["oracle"]
    assert w["helps"] is False and abs(w["diff_vs_scratch"] - 0.05) < 1e-9 and w["diff_ci95"][0] > 0

    # the bootstrap over seeds and tasks reads the per-task counts: a difference the same in every (seed, task) cell
    # has no spread to resample; one that differs only between seeds stays inside them; and the design's resolution
    # is intervals.mde of the paired differences' SD
    def plant_tasks(arm, per_seed):  # per_seed[s]: successes in every task (of its 2 quick episodes)
        for s, k in enumerate(per_seed):
            path = tmp_path / "cmp" / "units" / f"{arm}_seed{s}.json"
            res = json.loads(path.read_text())
            for t in res["tasks"]:
                t["successes"] = k
            n = sum(t["episodes"] for t in res["tasks"])
            res["success"] |= {"successes": k * len(res["tasks"]), "success_rate": k * len(res["tasks"]) / n}
            path.write_text(json.dumps(res))

    plant_tasks("scratch", [0, 0, 0])
    plant_tasks("oracle", [1, 1, 1])  # +0.5 in every cell
    w = aggregate()["oracle"]
    assert w["diff_boot95"] == [0.5, 0.5] and w["diff_sd"] == 0 and w["mde80"] == 0
    plant_tasks("oracle", [0, 1, 2])  # +0, +0.5, +1 by seed, the same in every task
    w = aggregate()["oracle"]
    lo, hi = w["diff_boot95"]
    assert 0 <= lo < 0.5 < hi <= 1 and hi - lo > 0.3  # seeds resampled: 0.0 .. 1.0 in steps of 1/6
    sys.path.insert(0, ROOT)
    from intervals import mde
    assert abs(w["diff_sd"] - 0.5) < 1e-9 and abs(w["mde80"] - mde(0.5, 3)) < 1e-12
