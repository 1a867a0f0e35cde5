"""``sfs replay``: run the pipeline over a rosbag2 and write the node's topics to a new bag.

Per selected input frame: decode, :meth:`Pipeline.process`, render and build the output messages
(the work the node does per frame), then write them with the input's header and receive time.

``realtime`` simulates the live node instead of processing every frame. Frames arrive at their
recorded receive times; one worker takes the **latest** waiting frame whenever it is free (the
node's latest-frame-only policy), so frames that arrive while it is busy are overwritten and
dropped. A frame's processing time is the measured decode + process + render time, so the
simulation tracks this machine's real speed. Dropped frames are neither processed nor written,
and the report says what fraction a live robot would have processed.

The report (JSON and a short text summary) holds frame counts, per-stage latency percentiles,
masks per frame, a label histogram and, with a ground-truth topic, mIoU.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sfs_core.bags import BagMessage, BagReader, OutputTopics, ResultBagWriter, StampMatcher
from sfs_core.evaluation.datasets import reduce_zero_label
from sfs_core.evaluation.label_mapping import LabelMapper
from sfs_core.evaluation.metrics import ConfusionMatrix
from sfs_core.evaluation.report import percentile_summary, stage_latencies
from sfs_core.evaluation.runner import MIOU_CONVENTION, FramePipeline
from sfs_core.result import SemanticResult


@dataclass
class ReplayOptions:
    """What to read and how. ``gt_topic`` needs ``mapper`` (our labels -> the GT's classes)."""

    image_topic: str | None = None
    gt_topic: str | None = None
    mapper: LabelMapper | None = None
    limit: int | None = None  # at most this many frames after --every (None: all)
    every: int = 1  # take every N-th image message
    realtime: bool = False
    storage: str | None = None  # output storage; None: same as the input
    color: bool = True
    overlay: bool = True
    overwrite: bool = False
    warmup: bool = True  # one untimed frame at the bag's image size before the first
    progress: bool = True
    topics: OutputTopics = field(default_factory=OutputTopics)

    def check(self) -> None:
        if self.every < 1:
            raise ValueError(f"--every must be >= 1, got {self.every}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {self.limit}")
        if self.gt_topic and self.mapper is None:
            raise ValueError("--gt-topic needs --label-map (the class names of the ground-truth ids)")


class LatestFrameSimulator:
    """One worker fed by a size-1 "latest frame" slot, on a simulated clock (seconds).

    Frame ``i`` (arriving at ``a_i``) is dropped exactly when frame ``i + 1`` arrives no later
    than the moment the worker becomes free; otherwise it starts at ``max(free, a_i)``.

    >>> sim = LatestFrameSimulator()
    >>> [sim.offer(a, n) for a, n in [(0.0, 0.1)]], sim.done(0.25)
    ([0.0], 0.25)
    >>> sim.offer(0.1, 0.2), sim.offer(0.2, 0.3)  # 0.2 arrived before 0.25: 0.1 is dropped
    (None, 0.25)
    """

    def __init__(self) -> None:
        self.free_at = -math.inf
        self._start: float | None = None

    def offer(self, arrival: float, next_arrival: float | None) -> float | None:
        """Start time of the frame arriving at ``arrival``, or ``None`` if it is dropped.
        ``next_arrival`` is the next frame's arrival (``None`` for the last frame)."""
        if self._start is not None:
            raise RuntimeError("call done() for the frame in progress first")
        if next_arrival is not None and next_arrival <= self.free_at:
            return None
        self._start = max(self.free_at, arrival)
        return self._start

    def done(self, duration: float) -> float:
        """Record the processing time of the started frame; returns its finish time."""
        if self._start is None:
            raise RuntimeError("no frame in progress")
        self.free_at, self._start = self._start + duration, None
        return self.free_at


def simulate_latest_frame(arrivals: Sequence[float], durations: Sequence[float]) -> list[int]:
    """Indices the latest-frame policy processes, given every frame's processing time.

    >>> simulate_latest_frame([0.0, 0.1, 0.2, 0.3, 0.4], [0.25] * 5)
    [0, 2, 4]
    """
    sim, processed = LatestFrameSimulator(), []
    for i, arrival in enumerate(arrivals):
        nxt = arrivals[i + 1] if i + 1 < len(arrivals) else None
        if sim.offer(arrival, nxt) is not None:
            sim.done(durations[i])
            processed.append(i)
    return processed


def select_frames(messages: Iterable[BagMessage], every: int = 1, limit: int | None = None) -> Iterator[BagMessage]:
    """Every ``every``-th message, at most ``limit`` of them (no decoding happens here)."""
    taken = 0
    for message in messages:
        if limit is not None and taken >= limit:
            return
        if message.index % every == 0:
            taken += 1
            yield message


def with_next(items: Iterable) -> Iterator[tuple]:
    """``(item, next_item)`` pairs; ``next_item`` is ``None`` for the last one."""
    iterator = iter(items)
    current = next(iterator, None)
    while current is not None:
        following = next(iterator, None)
        yield current, following
        current = following


class ReplayStats:
    """Per-frame measurements of a replay, summarised by :meth:`to_json`."""

    def __init__(self) -> None:
        self.timings: list[dict[str, float]] = []
        self.masks_per_frame: list[int] = []
        self.end_to_end_ms: list[float] = []
        self.pixels = np.zeros(0, dtype=np.int64)
        self.masks_by_label: Counter[str] = Counter()
        self.names: list[str] = []

    def add(self, result: SemanticResult, timings: dict[str, float]) -> None:
        self.timings.append(timings)
        self.masks_per_frame.append(len(result.masks))
        self.masks_by_label.update(m.label for m in result.masks)
        counts = np.bincount(result.label_map.reshape(-1), minlength=self.pixels.size)
        counts[: self.pixels.size] += self.pixels
        self.pixels = counts
        self.names = result.label_table.names

    def label_histogram(self) -> list[dict]:
        """Labels by pixel share, with the number of masks that carried each label."""
        total = max(int(self.pixels.sum()), 1)
        order = np.argsort(-self.pixels, kind="stable")
        return [
            {
                "label": self.names[i],
                "class_id": int(i),
                "pixel_share": round(float(self.pixels[i]) / total, 6),
                "masks": self.masks_by_label.get(self.names[i], 0),
            }
            for i in order.tolist() if self.pixels[i] > 0
        ]


class GroundTruthScorer:
    """mIoU of replayed frames against a ground-truth label topic, paired by header stamp."""

    def __init__(self, mapper: LabelMapper, gt_messages: Iterable[BagMessage], gt_topic: str) -> None:
        self.mapper = mapper
        self.gt_topic = gt_topic
        self.matcher = StampMatcher(iter(gt_messages))
        self.confusion = ConfusionMatrix(len(mapper.space.classes), mapper.space.ignore_index)
        self.frames = 0
        self._lut = np.zeros(0, np.int64)
        self._lut_version: int | None = None

    def update(self, result: SemanticResult, stamp_ns: int) -> bool:
        """Score ``result`` if a ground-truth image has ``stamp_ns``; returns whether it had one."""
        if result.label_table.version != self._lut_version:  # the table grew: extend the lookup
            self._lut, self._lut_version = self.mapper.lookup(result.label_table.names), result.label_table.version
        gt_message = self.matcher.get(stamp_ns)
        if gt_message is None:
            return False
        gt = gt_message.labels()
        gt = reduce_zero_label(gt) if self.mapper.space.reduce_zero_label else gt
        self.confusion.update(self._lut[result.label_map], gt)
        self.frames += 1
        return True

    def to_json(self, predicted_labels: list[str]) -> dict:
        space = self.mapper.space
        self.mapper.log_used(predicted_labels)
        return {
            "gt_topic": self.gt_topic,
            "frames_with_gt": self.frames,
            "gt_unmatched": self.matcher.unmatched,
            "protocol": {"ignore_index": space.ignore_index, "reduce_zero_label": space.reduce_zero_label, "miou_convention": MIOU_CONVENTION},
            "metrics": self.confusion.summary(space.classes),
            "label_mapping": self.mapper.to_json(predicted_labels),  # the labels that were predicted
        }


def process_frame(pipeline: FramePipeline, writer: ResultBagWriter, message: BagMessage,
                  clock: Callable[[], float]) -> tuple[SemanticResult, dict[str, float], float]:
    """Decode, process, render and write one frame: ``(result, timings_ms, node_seconds)``.

    ``node_seconds`` is the work a live node does per frame (decode + process + render); writing
    the bag is the replay's own cost and is left out.
    """
    t0 = clock()
    rgb = message.rgb()
    t1 = clock()
    result = pipeline.process(rgb)
    t2 = clock()
    messages = writer.build_messages(result, rgb, message.stamp_ns, message.frame_id)
    t3 = clock()
    writer.write_messages(messages, message.log_time_ns)
    t4 = clock()
    timings = {"decode": (t1 - t0) * 1e3, **result.timings, "render": (t3 - t2) * 1e3, "write": (t4 - t3) * 1e3}
    return result, timings, t3 - t0


def replay(pipeline: FramePipeline, bag: str | Path, out: str | Path, options: ReplayOptions | None = None,
           clock: Callable[[], float] = time.perf_counter) -> dict:
    """Replay ``bag`` through ``pipeline`` into the new bag ``out``; returns the report.

    ``clock`` (seconds) times each frame; tests pass a fake one to make ``realtime`` exact.
    """
    from tqdm import tqdm

    options = options or ReplayOptions()
    options.check()
    stats = ReplayStats()
    sim = LatestFrameSimulator() if options.realtime else None
    selected = dropped = 0
    first_arrival_ns = last_arrival_ns = 0
    warmup_seconds: float | None = None

    with BagReader(bag) as reader:
        topic = reader.select_image_topic(options.image_topic, exclude=(options.gt_topic,) if options.gt_topic else ())
        scorer = GroundTruthScorer(options.mapper, reader.messages(options.gt_topic), options.gt_topic) if options.gt_topic else None
        total = math.ceil(topic.count / options.every)
        bar = tqdm(total=min(total, options.limit or total), desc="replay", unit="frame", disable=not options.progress)
        frames = select_frames(reader.messages(topic.name), options.every, options.limit)
        storage = options.storage or reader.storage
        with ResultBagWriter(out, storage, options.topics, reader.typestore, options.color, options.overlay, options.overwrite) as writer:
            t_loop = clock()
            for message, following in with_next(frames):
                bar.update(1)
                first_arrival_ns = message.log_time_ns if selected == 0 else first_arrival_ns
                last_arrival_ns = message.log_time_ns
                selected += 1
                arrival = (message.log_time_ns - first_arrival_ns) / 1e9
                if sim is not None:
                    nxt = None if following is None else (following.log_time_ns - first_arrival_ns) / 1e9
                    if sim.offer(arrival, nxt) is None:
                        dropped += 1
                        continue
                if options.warmup and warmup_seconds is None and hasattr(pipeline, "warmup"):
                    t0 = clock()
                    pipeline.warmup(message.rgb().shape[:2])  # untimed: the node warms up at start
                    warmup_seconds = clock() - t0
                result, timings, node_seconds = process_frame(pipeline, writer, message, clock)
                stats.add(result, timings)
                if sim is not None:
                    stats.end_to_end_ms.append((sim.done(node_seconds) - arrival) * 1e3)
                if scorer is not None:
                    scorer.update(result, message.stamp_ns)
                bar.set_postfix(processed=len(stats.timings), masks=len(result.masks), ms=round(result.timings.get("total", 0.0)))
            loop_seconds = clock() - t_loop - (warmup_seconds or 0.0)
        bar.close()

    processed = len(stats.timings)
    span_s = (last_arrival_ns - first_arrival_ns) / 1e9
    report = {
        "input": {"bag": str(bag), "storage": reader.storage, "image_topic": topic.name, "msgtype": topic.msgtype, "frames_in_bag": topic.count},
        "selection": {"every": options.every, "limit": options.limit},
        "frames": {"selected": selected, "processed": processed, "dropped_realtime": dropped},
        "input_rate_hz": round((selected - 1) / span_s, 3) if span_s > 0 else None,
        "throughput_fps": round(processed / loop_seconds, 3) if loop_seconds > 0 else None,
        "wall_s": round(loop_seconds, 3),
        "warmup_s": None if warmup_seconds is None else round(warmup_seconds, 3),
        "latency_ms": stage_latencies(stats.timings),
        "masks_per_frame": percentile_summary(stats.masks_per_frame),
        "label_histogram": stats.label_histogram(),
        "output": {"bag": str(out), "storage": storage, "topics": dict(writer.counts)},
        "notes": [
            "latency_ms: per-stage wall times of processed frames; 'total' is Pipeline.process; decode, render and write are the replay's own",
            "labels topic: written with the first frame and whenever the label table grows",
        ],
    }
    if sim is not None:
        report["realtime"] = {
            "processed_fraction": round(processed / selected, 4) if selected else None,
            "policy": "latest frame only, one worker; arrivals at the bag's receive times; processing time = measured decode + process + render",
            "end_to_end_ms": percentile_summary(stats.end_to_end_ms),
        }
    if scorer is not None:
        report["evaluation"] = scorer.to_json([row["label"] for row in report["label_histogram"]])
    return report


def format_summary(report: dict) -> str:
    """A short, human-readable summary of a replay report."""
    inp, frames, lat = report["input"], report["frames"], report["latency_ms"]

    def stage(name: str) -> str:
        s = lat.get(name)
        return f"{name} {s['p50']:.0f}/{s['p90']:.0f}/{s['p99']:.0f}" if s and s["count"] else ""

    lines = [
        f"input  {inp['bag']} ({inp['storage']}) {inp['image_topic']} [{inp['msgtype'].rsplit('/', 1)[-1]}]: {inp['frames_in_bag']} frames in bag",
        f"frames selected {frames['selected']}, processed {frames['processed']}"
        + (f", dropped (realtime) {frames['dropped_realtime']}" if "realtime" in report else ""),
        f"throughput {report['throughput_fps']} frames/s over {report['wall_s']} s (input rate {report['input_rate_hz']} Hz)",
        "latency ms p50/p90/p99: " + " | ".join(filter(None, (stage(s) for s in lat))),
    ]
    mpf = report["masks_per_frame"]
    if mpf["count"]:
        lines.append(f"masks per frame: mean {mpf['mean']:.1f}, p50 {mpf['p50']:.0f}, max {mpf['max']:.0f}")
    top = ", ".join(f"{h['label']} {100 * h['pixel_share']:.1f}%" for h in report["label_histogram"][:8])
    lines.append(f"labels by pixels: {top or 'none'}")
    if "realtime" in report:
        rt = report["realtime"]
        e2e = rt["end_to_end_ms"]
        share = 100 * (rt["processed_fraction"] or 0)
        lines.append(
            f"realtime: a live node would process {frames['processed']}/{frames['selected']} frames ({share:.1f}%), "
            f"end-to-end p50 {e2e['p50']} ms"
        )
    if "evaluation" in report:
        ev, m = report["evaluation"], report["evaluation"]["metrics"]
        pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}%"  # noqa: E731
        lines.append(f"mIoU {pct(m['mIoU'])} ({m['classes_counted']} classes), aAcc {pct(m['aAcc'])} over {ev['frames_with_gt']} frames with ground truth")
    out = report["output"]
    lines.append(f"output {out['bag']} ({out['storage']}): " + ", ".join(f"{t} {n}" for t, n in out["topics"].items()))
    return "\n".join(lines)
