#!/usr/bin/env python3
"""`sfs replay` throughput and the `--realtime` processed fraction on a 10 Hz 640x480 bag made
from the bundled photos (random-weight models). bench/run calls it; it also runs alone."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "test"))  # the bag fixture writer of the tests
sys.path.insert(0, str(HERE.parent))


def replay_rate(frames: int = 30) -> dict:
    from fixtures_eval import camera_frames, write_camera_bag

    from sfs_core.cli import main as sfs
    from sfs_core.random_models import init_random

    config = init_random(HERE.parent / ".cache" / "bench" / "models")
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        bag = write_camera_bag(Path(tmp) / "camera", camera_frames(frames, (640, 480)), rate_hz=10.0)
        for mode, extra in (("offline", []), ("realtime", ["--realtime"])):
            report = Path(tmp) / f"{mode}.json"
            code = sfs(["replay", str(bag), "--out", str(Path(tmp) / mode), "--config", str(config), "--quiet",
                        "--report", str(report), "--set", f"cache_dir={HERE.parent / '.cache' / 'bench' / 'sfs'}", *extra])
            assert code == 0, f"sfs replay exited {code}"
            out[mode] = json.loads(report.read_text())
    summary = {
        "frames": frames,
        "replay_fps": out["offline"]["throughput_fps"],
        "realtime_processed_fraction": out["realtime"]["realtime"]["processed_fraction"],
    }
    print(f"sfs replay: {summary['replay_fps']:.2f} frames/s offline; --realtime on a 10 Hz bag processes "
          f"{summary['realtime_processed_fraction']:.1%} of frames")
    return summary


if __name__ == "__main__":
    replay_rate()
