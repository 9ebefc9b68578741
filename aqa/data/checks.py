"""Check a dataset as distributed: what was found, what is missing or corrupt, what to run.

:func:`check_dataset` resolves the root the way a run does (the registry entry's ``resolve``),
lists every split's samples (``samples``), then looks at every file a sample reads: frame
images (one ``listdir`` per folder; each frame opened to read its header) or videos (probed by
``aqa.video``). It never changes anything on disk. The report names the first few missing and
corrupt samples, counts all of them, gives each split's score range, and one command that fixes
what can be fixed. A sample an adapter marks with ``meta["problem"]`` (present, but its files do
not match its annotation, e.g. a FineDiving folder with more images than frame labels) is
listed as not matching, with the adapter's reason; an adapter's ``check_notes(cfg)`` adds
sentences about its annotation. ``ok`` is false when any annotated sample is missing, corrupt
or not matching, or a split
a run needs is empty; the CLI (``python -m aqa doctor``) then exits non-zero, and training
refuses unless ``data.allow_missing`` is set.
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from aqa.errors import AQAError, VideoError

SPLITS = ("train", "val", "test")
SHOW_FIRST = 5  # names listed per problem kind; the counts cover all of them


@dataclass
class CheckReport:
    dataset: str
    root: str  # the resolved data root
    found: bool = False  # the root and its annotation files exist and parse
    layout: str = ""  # the frame layout detected (MTL-AQA: core, musdl, tpt, videos)
    samples: dict = field(default_factory=dict)  # split -> annotated samples
    present: dict = field(default_factory=dict)  # split -> samples with every file present and readable
    missing: list = field(default_factory=list)  # first few "id: first missing path"
    missing_count: int = 0  # annotated samples with a missing frame or video
    corrupt: list = field(default_factory=list)  # first few "path: reason"
    corrupt_count: int = 0  # samples with an unreadable file
    invalid: list = field(default_factory=list)  # first few "id: why its files do not match its annotation"
    invalid_count: int = 0  # samples present but not as annotated (FineDiving: images vs labels)
    ranges: dict = field(default_factory=dict)  # split -> [min score, max score]
    fix: str = ""  # the one command that fixes what can be fixed (empty when ok)
    ok: bool = False  # ready to train: found, train and test non-empty, nothing missing or corrupt
    messages: list = field(default_factory=list)  # what was found, in plain sentences
    checked_files: int = 0  # files looked at

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        """The report for a terminal, one fact a line."""
        lines = [f"dataset {self.dataset} at {self.root}" + (f" (layout {self.layout})" if self.layout else "")]
        for split, n in self.samples.items():
            lo, hi = self.ranges.get(split, (None, None))
            rng = f", scores {lo:g}..{hi:g}" if lo is not None else ""
            lines.append(f"  {split}: {n} samples, {self.present.get(split, 0)} present{rng}")
        if self.missing_count:
            lines.append(f"  missing: {self.missing_count} samples, e.g.")
            lines += [f"    {m}" for m in self.missing]
        if self.corrupt_count:
            lines.append(f"  corrupt: {self.corrupt_count} samples, e.g.")
            lines += [f"    {c}" for c in self.corrupt]
        if self.invalid_count:
            lines.append(f"  not matching the annotation: {self.invalid_count} samples, e.g.")
            lines += [f"    {c}" for c in self.invalid]
        lines += [f"  {m}" for m in self.messages]
        lines.append("ok: ready to train" if self.ok else f"not ready; fix: {self.fix}")
        return "\n".join(lines)


def check_dataset(dataset: str, data_root: str | None, runs_dir: str | Path = "runs",
                  overrides: dict[str, Any] | None = None, probe: bool = True,
                  max_probe: int | None = None, progress=None) -> CheckReport:
    """Examine ``dataset`` at ``data_root`` (None/"" = the dataset's default location).

    ``overrides`` sets data-config fields (e.g. ``{"class_name": "all"}``); ``probe=False``
    skips opening files (existence only); ``max_probe`` caps the files opened;
    ``progress(done, total)`` is called after each sample's files are checked.
    """
    from aqa.registry import DATASETS

    entry = DATASETS.get(dataset)
    cfg = entry.config_cls()
    if data_root:
        cfg = replace(cfg, root=str(data_root))
    if overrides:
        cfg = replace(cfg, **overrides)
    report = CheckReport(dataset=dataset, root=str(data_root or ""))
    try:
        cfg = entry.resolve(cfg, Path(runs_dir))
        report.root = cfg.root
        by_split = {split: entry.samples(cfg, split) for split in SPLITS}
    except AQAError as exc:
        report.messages.append(str(exc))
        report.fix = _get_data_command(dataset, report.root or "<folder>")
        return report
    report.found = True
    notes = getattr(entry, "check_notes", None)  # what the adapter says about its annotation
    if notes is not None:
        report.messages.extend(notes(cfg))
    _check_files(report, by_split, probe, max_probe, progress)
    for split in ("train", "test"):
        if not report.samples.get(split):
            report.messages.append(f"the {split} split is empty; a run needs train and test samples")
    report.ok = (bool(report.samples.get("train")) and bool(report.samples.get("test"))
                 and not report.missing_count and not report.corrupt_count
                 and not report.invalid_count)
    if not report.ok:
        report.fix = _fix(report, dataset, Path(cfg.root), by_split)
    return report


def _check_files(report: CheckReport, by_split: dict, probe: bool, max_probe: int | None,
                 progress=None) -> None:
    from aqa.data.base import frame_paths, missing_files

    missing, corrupt, invalid = [], [], []
    dims: dict[str, int] = {}  # feature file -> its D (files of another D than most are corrupt)
    budget = [max_probe if max_probe is not None else float("inf")]
    seen: dict[str, str | None] = {}
    total, done = sum(len(s or []) for s in by_split.values()), 0
    for split, samples in by_split.items():
        if not samples:
            continue
        report.samples[split] = len(samples)
        scores = [s.score for s in samples]
        report.ranges[split] = [min(scores), max(scores)]
        layouts = {s.meta.get("layout") for s in samples} - {None}
        report.layout = report.layout or ",".join(sorted(layouts))
        gone = missing_files(samples)
        bad_ids = set(gone)
        for s in samples:
            done += 1
            if progress is not None:
                progress(done, total)
            if s.id in gone:
                missing.append(f"{s.id}: {gone[s.id][0]}")
                continue
            if s.meta.get("problem"):  # present, but not as annotated (the adapter says why)
                invalid.append(f"{s.id}: {s.meta['problem']}")
                bad_ids.add(s.id)
                continue
            if "features" in s.meta:  # a feature file: its header, not a video probe
                reason = _feature_unreadable(Path(s.meta["features"]), report, dims)
                if reason:
                    corrupt.append(reason)
                    bad_ids.add(s.id)
                continue
            if not probe or budget[0] <= 0:
                continue
            paths = frame_paths(s) if s.is_frame_folder else [Path(s.video)]
            reason = _first_unreadable(paths, s.is_frame_folder, budget, report, seen)
            if reason:
                corrupt.append(reason)
                bad_ids.add(s.id)
        report.present[split] = len(samples) - len(bad_ids)
    if dims:
        _feature_dims(report, by_split, dims, corrupt)
    report.missing, report.missing_count = missing[:SHOW_FIRST], len(missing)
    report.corrupt, report.corrupt_count = corrupt[:SHOW_FIRST], len(corrupt)
    report.invalid, report.invalid_count = invalid[:SHOW_FIRST], len(invalid)
    total = sum(report.samples.values())
    report.messages.insert(0, f"{total} annotated samples: " + ", ".join(
        f"{n} {split}" for split, n in report.samples.items()))
    if probe and max_probe is not None and budget[0] <= 0:
        report.messages.append(f"only {report.checked_files} files were opened (max_probe)")


def _feature_unreadable(path: Path, report: CheckReport, dims: dict) -> str | None:
    """``"path: reason"`` when a feature file is not a (T, D) array with T >= 1; records D."""
    from aqa.data.features import feature_problem, feature_shape

    report.checked_files += 1
    problem = feature_problem(path, None)
    if problem:
        return f"{path}: {problem}"
    dims[str(path)] = feature_shape(path)[1]
    return None


def _feature_dims(report: CheckReport, by_split: dict, dims: dict, corrupt: list) -> None:
    """Files whose D differs from most files' are corrupt; the recipe (or its absence) noted."""
    from aqa.data.features import recipe_of

    values = list(dims.values())
    common = max(set(values), key=values.count)
    for split, samples in by_split.items():
        for s in samples or []:
            d = dims.get(str(s.meta.get("features")))
            if d is not None and d != common:
                corrupt.append(f"{s.meta['features']}: D = {d}, the other programs have D = {common}")
                report.present[split] -= 1
    folders = {str(Path(p).parent) for p in dims}
    for folder in sorted(folders):
        recipe = recipe_of(folder)
        report.messages.append(
            f"features in {folder}: D = {common}, " + (
                f"made by aqa features extract ({recipe.get('backbone')}, clip {recipe.get('clip_len')}, "
                f"stride {recipe.get('stride')}, weights {recipe.get('weights')})" if recipe else
                "no recipe.json (an official release or made elsewhere)"))


def _first_unreadable(paths: list[Path], images: bool, budget: list, report: CheckReport,
                      seen: dict) -> str | None:
    """``"path: reason"`` of the first file of ``paths`` that cannot be read, else None."""
    for p in paths:
        key = str(p)
        if key not in seen:  # shared files (event videos, overlapping windows) are opened once
            budget[0] -= 1
            report.checked_files += 1
            seen[key] = _unreadable(p, images)
        if seen[key]:
            return f"{p}: {seen[key]}"
    return None


def _unreadable(path: Path, image: bool) -> str | None:
    if path.stat().st_size == 0:
        return "empty file (0 bytes)"
    if image:
        from PIL import Image, UnidentifiedImageError
        try:
            with Image.open(path) as im:
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            return f"not a readable image ({str(exc)[:80]})"
        return None
    from aqa import video
    try:
        video.probe(path)
    except VideoError as exc:
        msg = str(exc)
        return (msg[len(str(path)) + 2:] if msg.startswith(str(path)) else msg).split("; ")[0]
    return None


def _get_data_command(dataset: str, root: str) -> str:
    if dataset == "synthetic":
        return f"python -m aqa demo  # renders the synthetic dives into the workspace"
    return f"download {dataset} and pass its folder as --data-root (see docs/datasets.md)"


def _fix(report: CheckReport, dataset: str, root: Path, by_split: dict) -> str:
    q = shlex.quote
    if report.missing_count and dataset == "mtl_aqa" and (root / "videos").is_dir():
        return (f"python -m aqa data extract-frames --dataset mtl_aqa --data-root {q(str(root))}"
                "  # videos/ -> new/new_total_frames_256s/")
    features = [s.meta["features"] for ss in by_split.values() for s in ss or [] if "features" in s.meta]
    if features and (report.missing_count or report.corrupt_count):
        folder = str(Path(features[0]).parent)
        from aqa.data.features import recipe_of

        recipe = recipe_of(folder) or {}
        how = "".join(f" --{k.replace('_', '-')} {q(str(recipe[k]))}" for k in
                      ("backbone", "clip_len", "stride", "fps", "frame_size") if k in recipe)
        if recipe.get("weights_source") and not str(recipe["weights"]).startswith(("random", "torchvision")):
            how += f" --weights {q(recipe['weights_source'])}"
        return (f"python -m aqa features extract --dataset {'folder' if dataset == 'folder_features' else dataset} "
                f"--data-root {q(str(root))} --out {q(folder)}{how}  # finished files are kept; "
                "or train on the present programs with --allow-missing")
    if report.corrupt_count and not report.missing_count:
        first = report.corrupt[0].split(": ", 1)[0]
        if Path(first).suffix.lower() in (".jpg", ".jpeg", ".png"):
            return (f"re-extract or re-download {q(str(Path(first).parent))}, or train on the "
                    "rest with --allow-missing (data.allow_missing=true)")
        return (f"ffmpeg -i {q(first)} -c:v libx264 -pix_fmt yuv420p {q(first + '.fixed.mp4')}"
                "  # then replace the file")
    if report.invalid_count and not report.missing_count and not report.corrupt_count:
        present = sum(report.present.values())
        return (f"get those samples' files again (the reason is given for each), or train on "
                f"the {present} usable samples with --allow-missing (data.allow_missing=true; "
                "the run records which were left out)")
    if report.missing_count or report.corrupt_count or report.invalid_count:
        present = sum(report.present.values())
        return (f"restore the missing files (see docs/datasets.md), or train on the {present} "
                "present samples with --allow-missing (data.allow_missing=true)")
    if dataset == "folder":
        return "add a split column (train/test) to the score CSV, or set data.test_fraction above 0"
    return _get_data_command(dataset, str(root))
