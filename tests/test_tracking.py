"""Experiment tracking and pictures: wandb offline runs, the comparison plot, the evaluation videos.

    python -m pip install -r requirements-test.txt   # wandb, which users only need for --wandb
    python -m pytest -q tests/test_tracking.py

wandb runs offline (WANDB_MODE=offline) into the test's own folder; nothing reaches the network.
"""
import glob
import json
import os
import struct
import subprocess
import sys

import imageio.v3 as iio
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=ROOT)
ENV.pop("PYTHONUNBUFFERED", None)
TINY = ["--wm_size", "1m", "--batch_size", "4", "--log_every", "1", "--warmup", "2", "--device", "cpu",
        "--chunk", "4", "--eval_every", "2"]
MISSING = "error: --wandb: the wandb package is not installed (pip install wandb)"


def run(cwd, *args, ok=True, env=None):
    """Run a python command line in cwd; returns the completed process (asserting success unless ok=False)."""
    r = subprocess.run([sys.executable, *args], cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=300)
    if ok:
        assert r.returncode == 0, f"{args} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def imported(stderr):
    """Top-level names of the modules a `python -X importtime` run imported."""
    return {line.split("|")[-1].strip().split(".")[0] for line in stderr.splitlines()
            if line.startswith("import time:")}


def wandb_records(path):
    """The records of an offline run's .wandb file: LevelDB-log blocks of 32 KiB, each record a 7-byte
    header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last) and a chunk of a protobuf Record."""
    from wandb.proto import wandb_internal_pb2 as pb
    data, pos, chunk = open(path, "rb").read(), 7, b""  # 7: the file header ":W&B", magic, version
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if left < 7 or kind == 0:  # the block's zero padding
            pos += left
            continue
        chunk, pos = chunk + data[pos + 7:pos + 7 + n], pos + 7 + n
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(chunk)
            yield record
            chunk = b""


def offline_run(folder):
    """An offline run folder -> (run id, config dict, {step: {key: value}} of its history)."""
    records = list(wandb_records(glob.glob(os.path.join(folder, "run-*.wandb"))[0]))
    run_rec = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    config = {u.key: json.loads(u.value_json) for u in run_rec.config.update}
    history = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            history.setdefault(items["_step"], {}).update(items)
    return run_rec.run_id, config, history


@pytest.fixture(scope="module")
def work(tmp_path_factory, lang_cache):
    """A fresh folder with a tiny data/toy in it."""
    d = tmp_path_factory.mktemp("tracking")
    run(d, os.path.join(ROOT, "convert.py"), "toy", "--image_size", "32", "--source_episodes", "12", "--target_demos",
        "2", "--source_demos", "12")
    return d


def test_pretrain_logs_to_an_offline_wandb_run_and_resume_continues_it(work):
    env = dict(ENV, WANDB_MODE="offline", WANDB_DIR=str(work / "wb"))
    os.makedirs(work / "wb")
    run(work, os.path.join(ROOT, "pretrain.py"), *TINY, "--max_steps", "2", "--out_dir", "pt", "--wandb",
        "--wandb_project", "lawm-test", env=env)
    runs = glob.glob(str(work / "wb" / "wandb" / "offline-run-*"))
    assert len(runs) == 1
    run_id, config, history = offline_run(runs[0])
    assert run_id == open(work / "pt" / "wandb_id.txt").read() and config["max_steps"] == 2 and config["wandb"]
    # every log.jsonl row at its step: training rows as they are, eval rows under eval/
    rows = [json.loads(line) for line in open(work / "pt" / "log.jsonl")]
    for row in rows:
        got = history[row["step"]]
        if "eval" in row:
            assert got["eval/openloop_err"] == pytest.approx(row["eval"]["openloop_err"])
            assert [got[f"eval/openloop_k/{k + 1}"] for k in range(4)] == pytest.approx(row["eval"]["openloop_k"])
            assert got["rollout/_type"] == "image-file"  # rollout_<step>.png, a file of the run
            assert os.path.isfile(os.path.join(runs[0], "files", got["rollout/path"]))
        else:
            assert got["recon"] == pytest.approx(row["recon"]) and got["lr"] == pytest.approx(row["lr"])
    assert sorted(history) == [0, 1, 2]
    # --resume: the same wandb run, continued from the checkpoint's step
    run(work, os.path.join(ROOT, "pretrain.py"), *TINY, "--max_steps", "3", "--out_dir", "pt", "--wandb",
        "--wandb_project", "lawm-test", "--resume", env=env)
    runs = sorted(glob.glob(str(work / "wb" / "wandb" / "offline-run-*")))
    assert len(runs) == 2 and all(r.endswith(f"-{run_id}") for r in runs)
    second_id, _, history = offline_run(runs[1])
    assert second_id == run_id and sorted(history) == [2, 3] and "eval/gate_w" in history[3]


def test_wandb_missing_is_one_line_error_before_anything_is_written(tmp_path):
    fake = tmp_path / "fake"  # a wandb that cannot be imported, first on the path
    os.makedirs(fake / "wandb")
    (fake / "wandb" / "__init__.py").write_text("raise ImportError('no wandb here')\n")
    env = dict(ENV, PYTHONPATH=f"{fake}{os.pathsep}{ROOT}")
    for script, out in (("pretrain.py", ["--out_dir", "o"]), ("finetune.py", ["--out_dir", "o"]),
                        ("evaluate.py", ["--ckpt", "nope/ckpt.pt", "--out_dir", "o"]), ("compare.py", ["--out", "o"])):
        r = run(tmp_path, os.path.join(ROOT, script), *out, "--wandb", ok=False, env=env)
        assert r.returncode != 0 and r.stderr.strip() == MISSING, (script, r.stderr[-2000:])
        assert sorted(os.listdir(tmp_path)) == ["fake"], script  # nothing written


def test_evaluate_writes_mp4_and_gif_videos_of_the_episode_and_no_wandb_without_the_flag(work):
    run(work, os.path.join(ROOT, "finetune.py"), "--max_steps", "1", "--batch_size", "4", "--out_dir", "ft",
        "--device", "cpu")
    r = run(work, "-X", "importtime", os.path.join(ROOT, "evaluate.py"), "--ckpt", "ft/ckpt.pt", "--episodes", "1",
            "--tasks", "0", "--max_steps", "5", "--videos", "1", "--out_dir", "ev", "--device", "cpu")
    assert "wandb" not in imported(r.stderr) and "matplotlib" not in imported(r.stderr)
    res = json.load(open(work / "ev" / "results.json"))["tasks"][0]
    steps = res["per_episode_steps"][0]
    assert 1 <= steps <= 5 and (steps == 5 or res["per_episode"][0] == 1)  # a failed episode runs to the limit
    mp4 = glob.glob(str(work / "ev" / "*_ep0_*.mp4"))
    assert len(mp4) == 1 and os.path.basename(mp4[0]).startswith(res["task"])
    frames = iio.imread(mp4[0], index=None)  # (T, H, W, 3): the first observation and one after each step
    assert frames.shape == (steps + 1, 128, 128, 3)  # 32 px frames shown at 4x
    # the older --gifs N: N GIFs, the same frames
    run(work, os.path.join(ROOT, "evaluate.py"), "--ckpt", "ft/ckpt.pt", "--episodes", "1", "--tasks", "0",
        "--max_steps", "5", "--gifs", "1", "--out_dir", "ev_gif", "--device", "cpu")
    gif = glob.glob(str(work / "ev_gif" / "*_ep0_*.gif"))
    assert len(gif) == 1 and not glob.glob(str(work / "ev_gif" / "*.mp4"))
    assert len(iio.imread(gif[0], index=None)) == steps + 1


def test_pretrain_imports_no_wandb_without_the_flag(work):
    r = run(work, "-X", "importtime", os.path.join(ROOT, "pretrain.py"), *TINY, "--max_steps", "0", "--out_dir", "pt0")
    assert "wandb" not in imported(r.stderr) and "matplotlib" not in imported(r.stderr)
    assert "torch" in imported(r.stderr)  # the check sees the imports at all
    assert not os.path.exists(work / "pt0" / "wandb_id.txt") and not os.path.exists(work / "wandb")


# compare.py --plot with the figure read back before it is saved: each axes' title, tick labels, bars (height,
# colour), error bars (point, whisker ends, colour), the horizontal lines across it (y, style) and the seeds' dots, to axes.json
SPY = """
import json, runpy, sys
import matplotlib
from matplotlib.collections import PathCollection
from matplotlib.colors import to_hex
from matplotlib.container import ErrorbarContainer
from matplotlib.figure import Figure
save = Figure.savefig
def spy(fig, path, **kw):
    axes = [{"title": ax.get_title(), "ticks": [t.get_text() for t in ax.get_xticklabels()],
             "bars": [[p.get_height(), to_hex(p.get_facecolor(), keep_alpha=False)] for p in ax.patches],
             "points": [[float(c.lines[0].get_ydata()[0]), [[float(y) for x, y in s] for s in c.lines[2][0].get_segments()],
                         to_hex(c.lines[0].get_color())] for c in ax.containers if isinstance(c, ErrorbarContainer)],
             "hlines": [[float(l.get_ydata()[0]), l.get_linestyle()] for l in ax.lines if list(l.get_xdata()) == [0, 1]],
             "dots": [[[float(x), float(y)] for x, y in c.get_offsets()] for c in ax.collections
                      if isinstance(c, PathCollection)]}
            for ax in fig.axes]
    json.dump(axes, open("axes.json", "w"))
    save(fig, path, **kw)
Figure.savefig = spy
compare, sys.argv = sys.argv[1], sys.argv[1:]
runpy.run_path(compare, run_name="__main__")
"""


def test_compare_plot_draws_each_arms_numbers_and_the_decision(tmp_path):
    """The plot of a planted comparison, read back from the figure: per policy a column, success with its
    interval over seeds above, the paired difference with its interval below (none for the reference arm),
    green where the arm helps, the decision rule's bar as a dashed line."""
    arms = {"scratch": (.20, [.10, .30], 0.0, [0.0, 0.0], False), "oracle": (.45, [.35, .55], .25, [.15, .35], True),
            "wm_source": (.15, [.05, .25], -.05, [-.12, .02], False), "dp_scratch": (.50, [.40, .60], 0.0, [0.0, 0.0], False),
            "dp_wm_target": (.62, [.55, .69], .12, [.06, .18], True)}
    res = {a: {"success": m, "ci95_seeds": ci, "diff_vs_scratch": d, "diff_ci95": dci, "helps": h}
           for a, (m, ci, d, dci, h) in arms.items()}
    seeds = {"scratch": [.1, .2, .3], "oracle": [.4, .5, .45], "wm_source": [.1, .2, .15], "dp_scratch": [.5, .4, .6],
             "dp_wm_target": [.6, .55, .7]}  # per seed; the paired differences below are arm - its scratch, seed by seed
    for a, v in seeds.items():
        res[a]["per_seed"] = v
    (tmp_path / "c.json").write_text(json.dumps({"config": {"helps_points": 7}, "results": res}))
    run(tmp_path, "-c", SPY, os.path.join(ROOT, "compare.py"), "--plot", "c.json")
    top_baku, top_dp, low_baku, low_dp = json.load(open(tmp_path / "axes.json"))
    green, blue, gray = "#2ca02c", "#1f77b4", "#7f7f7f"  # tab:green, tab:blue, tab:gray
    assert (top_baku["title"], top_dp["title"]) == ("BAKU", "Diffusion Policy")
    for top, low, names in ((top_baku, low_baku, ["scratch", "oracle", "wm_source"]),
                            (top_dp, low_dp, ["dp_scratch", "dp_wm_target"])):
        assert top["ticks"] == names and low["ticks"] == ["(ref) " + names[0], *names[1:]]
        colour = [green if res[a]["helps"] else None for a in names]
        assert [b[0] for b in top["bars"]] == pytest.approx([100 * res[a]["success"] for a in names])
        assert [b[1] for b in top["bars"]] == [c or blue for c in colour]
        assert [p[0] for p in top["points"]] == pytest.approx([100 * res[a]["success"] for a in names])
        assert [y for p in top["points"] for y in p[1][0]] == pytest.approx([100 * x for a in names for x in res[a]["ci95_seeds"]])
        # below: no point for the reference arm (its difference is 0 by definition), then each arm's difference
        assert low["points"][0][0] != low["points"][0][0]
        assert [p[0] for p in low["points"][1:]] == pytest.approx([100 * res[a]["diff_vs_scratch"] for a in names[1:]])
        assert [y for p in low["points"][1:] for y in p[1][0]] == pytest.approx([100 * x for a in names[1:]
                                                                                 for x in res[a]["diff_ci95"]])
        assert [p[2] for p in low["points"][1:]] == [c or gray for c in colour[1:]]
        assert sorted(low["hlines"]) == [[0.0, "-"], [7.0, "--"]]  # zero, and the bar of --helps_points
        # each seed a dot left of its arm's mean (x i - 0.35 .. i - 0.15); below, the seed's paired difference
        assert [len(c) for c in top["dots"]] == [3] * len(names) and [len(c) for c in low["dots"]] == [3] * (len(names) - 1)
        assert [y for c in top["dots"] for _, y in c] == pytest.approx([100 * v for a in names for v in seeds[a]])
        assert [y for c in low["dots"] for _, y in c] == pytest.approx(
            [100 * (p - q) for a in names[1:] for p, q in zip(seeds[a], seeds[names[0]])])
        assert all(i - 0.36 < x < i - 0.14 for i, c in enumerate(top["dots"]) for x, _ in c)
    with Image.open(tmp_path / "c.png") as im:  # the file the figure went to, beside the json
        assert im.format == "PNG"


def test_compare_plot_from_compare_json_is_a_png(tmp_path):
    out = tmp_path / "toy_compare.png"
    r = run(tmp_path, os.path.join(ROOT, "compare.py"), "--plot", os.path.join(ROOT, "results", "toy_compare.json"),
            "--out_png", str(out))
    assert f"wrote {out}" in r.stdout and not os.path.exists(tmp_path / "runs")  # --plot runs nothing
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] >= 800 and im.size[1] >= 600
    r = run(tmp_path, os.path.join(ROOT, "compare.py"), "--plot", "missing.json", ok=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error: --plot missing.json:") and len(r.stderr.strip().splitlines()) == 1
