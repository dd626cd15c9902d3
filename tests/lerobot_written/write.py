"""The two tiny datasets beside this file, written by LeRobot's own dataset writer (LeRobotDataset.create,
add_frame, save_episode; finalize in v3.0), so tests/test_lerobot.py checks convert_lerobot.py against what
LeRobot really writes, not only against our reading of its layout. lerobot cannot join our environment (it
pins torch < 2.11, av < 16, ...), so these were made once in throwaway virtualenvs:

    pip install --no-deps lerobot==0.3.3   # codebase v2.1    then: python write.py v2.1
    pip install --no-deps lerobot==0.4.4   # codebase v3.0    then: python write.py v3.0
    (+ the datasets, huggingface_hub, pandas, jsonlines, draccus, einops, accelerate ... they import; writing never
    calls torchvision, so a stand-in module was enough.) v2.1's images/ folder was then deleted: push_to_hub
    leaves it out (its PNGs are embedded in the parquet files), so a downloaded dataset has none.

Both use LeRobot's default codec (AV1, libsvtav1). Episode e (3 of them, 5, 4 and 6 frames, 10 fps) at step t:
observation.images.image (video) a flat colour (20 + 30 e + 10 t, 200 - 10 t, 60 + 40 e) with blue 250 on its
left half (a mirror shows), observation.images.wrist_image (image, PNG in the parquet) its negative,
observation.state (10 t, e, 0, 0, 0, 0, 0, 1), action (t, -t, e, 0, 0, 0, 1); tasks: put the bowl on the
plate, pick up the cup, put the bowl on the plate.
"""
import os
import sys

import numpy as np

S, STEPS = 32, (5, 4, 6)
TASKS = ("put the bowl on the plate", "pick up the cup", "put the bowl on the plate")


def frame(e, t):
    img = np.empty((S, S, 3), np.uint8)
    img[:] = (20 + 30 * e + 10 * t, 200 - 10 * t, 60 + 40 * e)
    img[:, :S // 2, 2] = 250
    return img


if __name__ == "__main__":
    from lerobot.datasets.lerobot_dataset import LeRobotDataset  # only here: the tests import frame() and the constants

    features = {
        "observation.images.image": {"dtype": "video", "shape": (S, S, 3), "names": ["height", "width", "channel"]},
        "observation.images.wrist_image": {"dtype": "image", "shape": (S, S, 3), "names": ["height", "width", "channel"]},
        "observation.state": {"dtype": "float32", "shape": (8,), "names": None},
        "action": {"dtype": "float32", "shape": (7,), "names": None},
    }
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), sys.argv[1])
    ds = LeRobotDataset.create("lawm/tiny", fps=10, features=features, root=root, use_videos=True)
    for e, T in enumerate(STEPS):
        for t in range(T):
            x = {"observation.images.image": frame(e, t), "observation.images.wrist_image": 255 - frame(e, t),
                 "observation.state": np.array([10 * t, e, 0, 0, 0, 0, 0, 1], np.float32),
                 "action": np.array([t, -t, e, 0, 0, 0, 1], np.float32)}
            if sys.argv[1] == "v2.1":
                ds.add_frame(x, task=TASKS[e])  # v0.3.3: the task is an argument
            else:
                ds.add_frame({**x, "task": TASKS[e]})  # v0.4: a key of the frame
        ds.save_episode()
    if hasattr(ds, "finalize"):
        ds.finalize()  # v3.0: closes the parquet writers
    print("wrote", root)
