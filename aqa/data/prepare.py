"""Prepare a dataset: videos -> frame folders, and PECoP's list files.

:func:`extract_frames` runs one ``ffmpeg`` per video (in parallel over files, a progress bar
over them). Each video's frames go to a hidden ``.<name>.partial`` folder that is renamed into
place when ffmpeg succeeds, so an interrupted run leaves no half folder under the final name and
a rerun only extracts what is not done (resumable per video). Frames are numbered from 1, as
``ffmpeg -i V out/%08d.jpg`` does, which is what CoRe's MTL-AQA layout expects
(``-vf scale=-1:256 -qscale:v 2``, docs/datasets.md, MTL-AQA).

:func:`write_pecop_lists` writes ``sample_name label num_frames num_p`` lines (PECoP's format,
docs/datasets.md, PD4T) for a dataset's train and test samples, and can link each sample's frames as
``<out>/<num_p>/<sample_name>/img_{i:05d}.jpg`` so PECoP's loader reads them unchanged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from aqa.errors import DatasetError

VIDEO_EXTS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".gif", ".m4v")


@dataclass
class ExtractResult:
    done: list  # output folders written now
    skipped: list  # output folders already complete
    failed: list  # "video: reason"


def ffmpeg_command(video: Path, out_dir: Path, height: int = 256, pattern: str = "%08d.jpg",
                   quality: int = 2) -> list[str]:
    """The argv that writes every frame of ``video`` to ``out_dir/pattern`` at ``height`` px."""
    vf = f"scale=-2:{height}" if height else "null"
    return ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(video), "-vf", vf,
            "-qscale:v", str(quality), "-start_number", "1", str(out_dir / pattern)]


def _extract_one(video: Path, out_dir: Path, height: int, pattern: str) -> str | None:
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    proc = subprocess.run(ffmpeg_command(video, partial, height, pattern), capture_output=True, text=True)
    if proc.returncode != 0 or not any(partial.iterdir()):
        shutil.rmtree(partial, ignore_errors=True)
        return f"{video}: ffmpeg failed ({(proc.stderr.strip().splitlines() or ['no frames'])[-1][:200]})"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(partial, out_dir)
    return None


def extract_frames(jobs: Sequence[tuple[Path, Path]], height: int = 256, pattern: str = "%08d.jpg",
                   workers: int = 2, progress: bool | Callable[[int, int], None] = True) -> ExtractResult:
    """Extract ``(video, out_dir)`` pairs; complete ``out_dir`` folders are skipped."""
    if shutil.which("ffmpeg") is None:
        raise DatasetError("ffmpeg is not installed; install it (e.g. apt-get install ffmpeg)")
    todo, skipped = [], []
    for video, out_dir in jobs:
        if out_dir.is_dir() and any(out_dir.iterdir()):
            skipped.append(str(out_dir))
        elif not Path(video).is_file():
            raise DatasetError(f"{video}: no such video file")
        else:
            out_dir.parent.mkdir(parents=True, exist_ok=True)
            todo.append((Path(video), Path(out_dir)))
    bar = None
    if progress is True and todo:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), unit="video", desc="extract-frames")
    result = ExtractResult([], skipped, [])
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(_extract_one, v, o, height, pattern): (v, o) for v, o in todo}
        for n, fut in enumerate(as_completed(futures), start=1):
            error = fut.result()
            (result.failed.append(error) if error else result.done.append(str(futures[fut][1])))
            if bar is not None:
                bar.update(1)
            elif callable(progress):
                progress(n, len(todo))
    if bar is not None:
        bar.close()
    return result


def mtl_aqa_jobs(root: Path) -> list[tuple[Path, Path]]:
    """MTL-AQA event videos ``videos/{event:02d}.<ext>`` -> CoRe's
    ``new/new_total_frames_256s/{event:02d}/``."""
    videos = root / "videos"
    if not videos.is_dir():
        raise DatasetError(f"no {videos}; put the event videos there as 01.mp4, 02.mp4, ... "
                           "(MTL-AQA's 15 YouTube events, see docs/datasets.md)")
    out = root / "new" / "new_total_frames_256s"
    jobs = []
    for v in sorted(videos.iterdir()):
        if v.suffix.lower() in VIDEO_EXTS and v.stem.isdigit():
            jobs.append((v, out / f"{int(v.stem):02d}"))
    if not jobs:
        raise DatasetError(f"{videos}: no event videos named like 01.mp4")
    return jobs


def folder_jobs(videos: Path, out: Path) -> list[tuple[Path, Path]]:
    """Every video in ``videos`` -> ``out/<stem>/``."""
    if not videos.is_dir():
        raise DatasetError(f"{videos}: no such folder of videos")
    return [(v, out / v.stem) for v in sorted(videos.iterdir()) if v.suffix.lower() in VIDEO_EXTS]


def write_pecop_lists(samples_by_split: dict, out: Path, link_frames: bool = False,
                      label_of: Callable | None = None) -> dict[str, Path]:
    """``out/<split>.list`` for each split; with ``link_frames`` also the symlinked frame tree.

    A line is ``sample_name label num_frames num_p``: the sample id, ``label_of(sample)``
    (default: the integer part of the score; PECoP's pretext task does not use it), the frames
    in the sample's span, and a group folder (``meta["event"]`` as two digits, else ``0``).
    """
    from aqa.data.base import frame_paths

    out.mkdir(parents=True, exist_ok=True)
    label_of = label_of or (lambda s: int(s.score))
    written = {}
    for split, samples in samples_by_split.items():
        lines = []
        for s in samples:
            if not s.is_frame_folder:
                raise DatasetError(f"{s.id}: PECoP lists need frame folders; extract the frames "
                                   "first (python -m aqa data extract-frames)")
            num_p = f"{s.meta['event']:02d}" if "event" in s.meta else "0"
            n = s.frames.count
            lines.append(f"{s.id} {label_of(s)} {n} {num_p}")
            if link_frames:
                folder = out / num_p / s.id
                folder.mkdir(parents=True, exist_ok=True)
                for i, src in enumerate(frame_paths(s), start=1):
                    dst = folder / f"img_{i:05d}.jpg"
                    if not dst.is_symlink():
                        dst.symlink_to(src)
        path = out / f"{split}.list"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text("".join(line + "\n" for line in lines))
        os.replace(tmp, path)
        written[split] = path
    return written
