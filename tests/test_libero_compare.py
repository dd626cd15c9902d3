"""The LIBERO comparison (compare.py --env libero_object) in its tiny form, end to end in the real simulator:
expert video and demos, conversion, every arm's stages, evaluation, CCA, the records and the tables."""
import json
import os
import shutil
import subprocess
import sys

from conftest import ROOT, require_libero

require_libero()

ARMS = ["scratch", "wm", "sup"]  # the default arms (idm runs the stages wm runs; its own path is tested on the toy)


def test_libero_compare_quick_every_arm_records_and_resume(tmp_path):
    cmd = [sys.executable, os.path.join(ROOT, "compare.py"), "--env", "libero_object", "--quick", "--out", "cmp",
           "--arms", ",".join(ARMS), "--jobs", "2"]  # two units at once, as the real run
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    res = json.load(open(tmp_path / "cmp" / "compare.json"))
    out = res["results"]
    assert list(out) == ARMS and res["config"]["helps_points"] == 5
    for arm in ARMS:  # task 0, one episode from init state 0, one seed
        assert out[arm]["episodes"] == 1 and list(out[arm]["tasks"]) == [
            "pick_up_the_alphabet_soup_and_place_it_in_the_basket"]
    assert "zero_shot" not in out["wm"] and "zero_shot" in out["sup"]  # sup: its policy also before stage 2
    assert len(out["wm"]["gate_w"]["openloop_k"]) == 10 and "put" in out["wm"]["cca"]
    # stage 1 builds the stage-2 policy (agentview + 8-d proprio, 7-d actions); its world model sees 32 px; sup
    # trains the same policy on the same video with its actions; every arm is evaluated from the same init states
    cmds = {arm: json.load(open(tmp_path / "cmp" / "units" / f"{arm}_seed0.json"))["commands"] for arm in ARMS}
    assert "--state_dim 8 --latent_dim 7 --wm_image_size 32 --no_context" in cmds["wm"][0]  # the recipe its gates chose
    assert cmds["sup"][0].split()[1] == "finetune.py" and "video --cameras agentview --state_keys" in cmds["sup"][0]
    for arm in ARMS:
        assert any(c.split()[1] == "evaluate.py" and "--first_init 0" in c for c in cmds[arm])
    assert "| pick_up_the_alphabet_soup_and_place_it_in_the_basket |" in r.stdout
    assert not os.path.exists(os.path.join(tmp_path, "results"))  # --quick never writes the repository's results/
    # a fresh machine: the runs are gone, the records stay; the rerun runs nothing and prints the same table
    log = (tmp_path / "cmp" / "commands.log").read_text()
    assert log.count("libero-expert") == 1  # --quick: one recording is both the video and the demos
    for arm in ARMS + ["data"]:  # the expert data too: nothing is recorded again
        shutil.rmtree(tmp_path / "cmp" / arm)
    r2 = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r2.returncode == 0 and (tmp_path / "cmp" / "commands.log").read_text() == log
    assert json.load(open(tmp_path / "cmp" / "compare.json"))["results"]["wm"]["tasks"] == out["wm"]["tasks"]
