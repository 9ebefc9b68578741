"""The data doctor: is a dataset's root usable for training, and if not, what to do.

``check(dataset, data_root, runs_dir)`` resolves the root the way a run would (the dataset
registry entry's ``resolve``), lists the samples of every split (``samples``), and looks at
every file: missing ones, and ones :func:`aqa.video.probe` cannot open (corrupt, empty, not a
video). It never changes anything on disk. The report says in one line what to run to fix the
first problem it found.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path

from aqa.errors import AQAError, VideoError

SPLITS = ("train", "val", "test")
SHOW_FIRST = 5  # names listed per problem kind; the count covers all of them


@dataclass
class DoctorReport:
    dataset: str
    root: str  # the resolved data root
    found: bool = False  # the root and its annotation file exist and parse
    samples: dict[str, int] = field(default_factory=dict)  # split -> sample count
    missing: list[str] = field(default_factory=list)  # first few missing video files
    missing_count: int = 0
    corrupt: list[str] = field(default_factory=list)  # first few unreadable files, with reason
    corrupt_count: int = 0
    score_range: dict[str, tuple[float, float]] = field(default_factory=dict)  # split -> (min, max)
    ok: bool = False  # ready to train: found, train and test non-empty, nothing missing or corrupt
    fix: str = ""  # one suggested command (empty when ok)
    messages: list[str] = field(default_factory=list)  # what was found, in plain sentences
    probed: int = 0  # videos opened to check them

    def to_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)


def prepare_command(dataset: str, root: str) -> str:
    """The command that makes ``dataset``'s data at ``root`` (or how to get it)."""
    if dataset == "synthetic":
        code = (f"from aqa.data.synthetic import render_dataset; "
                f"render_dataset({str(root)!r})")
        return f"python -c {shlex.quote(code)}"
    if dataset == "folder":
        return (f"put your clips under {root} with a scores.csv (header video,score"
                "[,difficulty,split]) next to them")
    return f"download {dataset} and pass its folder as the data root (see docs/datasets.md)"


def check(dataset: str, data_root: str | None, runs_dir: str | Path, probe_videos: bool = True,
          max_probe: int | None = None) -> DoctorReport:
    """Examine ``dataset`` at ``data_root`` (None/"" = the dataset's default location)."""
    from aqa.registry import DATASETS

    entry = DATASETS.get(dataset)
    cfg = entry.config_cls()
    if data_root:
        cfg = replace(cfg, root=str(data_root))
    try:
        cfg = entry.resolve(cfg, Path(runs_dir))
    except AQAError as exc:
        report = DoctorReport(dataset=dataset, root=str(data_root or ""))
        report.messages.append(str(exc))
        report.fix = prepare_command(dataset, data_root or "<folder>")
        return report
    report = DoctorReport(dataset=dataset, root=cfg.root)
    by_split = {}
    try:
        for split in SPLITS:
            by_split[split] = entry.samples(cfg, split)
    except AQAError as exc:
        if dataset == "synthetic":
            report.messages.append(f"the synthetic dives are not rendered at {cfg.root} yet")
        report.messages.append(str(exc))
        report.fix = prepare_command(dataset, cfg.root)
        return report
    report.found = True
    missing, corrupt = [], []
    for split, samples in by_split.items():
        if samples:
            report.samples[split] = len(samples)
            scores = [s.score for s in samples]
            report.score_range[split] = (min(scores), max(scores))
        for s in samples:
            if not Path(s.video).exists():
                missing.append(str(s.video))
                continue
            if probe_videos and (max_probe is None or report.probed < max_probe):
                report.probed += 1
                try:
                    from aqa import video
                    video.probe(s.video)
                except VideoError as exc:
                    corrupt.append(f"{s.video}: {_short(str(exc), str(s.video))}")
    report.missing, report.missing_count = missing[:SHOW_FIRST], len(missing)
    report.corrupt, report.corrupt_count = corrupt[:SHOW_FIRST], len(corrupt)
    total = sum(report.samples.values())
    report.messages.append(f"{total} samples in {cfg.root}: " + ", ".join(
        f"{n} {split}" for split, n in report.samples.items()))
    for split in ("train", "test"):
        if not report.samples.get(split):
            report.messages.append(f"the {split} split is empty; a run needs train and test samples")
    if missing:
        report.messages.append(f"{len(missing)} video file(s) listed in the annotations are missing")
    if corrupt:
        report.messages.append(f"{len(corrupt)} video file(s) cannot be read")
    if probe_videos and max_probe is not None and report.probed < total - len(missing):
        report.messages.append(f"only the first {report.probed} videos were opened to check them")
    report.ok = (report.found and bool(report.samples.get("train"))
                 and bool(report.samples.get("test")) and not missing and not corrupt)
    if not report.ok:
        if missing or not total:
            report.fix = prepare_command(dataset, cfg.root)
        elif corrupt:
            first = corrupt[0].split(": ", 1)[0]
            report.fix = (f"ffmpeg -i {shlex.quote(first)} -c:v libx264 -pix_fmt yuv420p "
                          f"{shlex.quote(first + '.fixed.mp4')}  # then replace the file")
        else:
            report.fix = ("add a split column (train/test) to the score CSV, or set "
                          "data.test_fraction above 0")
    return report


def _short(message: str, path: str) -> str:
    """A VideoError message without the repeated path prefix, first sentence only."""
    if message.startswith(path + ": "):
        message = message[len(path) + 2:]
    return message.split("; ")[0]
