"""Training-loader speed: our DataLoader path against CoRe's official loader procedure, and the
raw-video reader against the decoder's own speed.

    python bench/loader.py [--quick] [--rounds 3] [--samples 6] [--workers 0 1 2]
                           [--out bench/out/loader.json]

Generates its own data in a temporary folder (deterministic JPEGs written by PIL):

- ``frames``: MTL-AQA in CoRe's frame layout (``new/new_total_frames_256s/{event:02d}/{n:08d}.jpg``,
  455x256, one event folder per sample holding its 103-frame window and every -3..3 shift), with
  the annotation and split pickles in ``info/``; every sample has the same DD, so each one is the
  others' exemplar;
- ``videos``: the same number of trimmed H.264 clips (``videos/{event:02d}_01.mp4``, 640x360,
  110 frames, x264 defaults), the MTL-AQA ``videos`` layout (the loader's ``videos`` cases:
  cold and warm cache);
- ``event.mp4``: a 30 s clip for the reader (12 s with ``--quick``).

Then, every case once a round (``--rounds`` rounds; a busy neighbour on a shared machine slows a
whole round alike), one training epoch of pairs (query + exemplar, batch 1, as CoRe trains) with
0, 1 and 2 DataLoader workers:

- ``ours``: the trainer's path: ``build_run_config("core", "mtl_aqa")`` -> the dataset adapter's
  ``ClipDataset`` (tvv pipeline, jitter 3) -> CoRe's ``PairDataset`` -> ``DataLoader`` with
  ``aqa.data.base.collate``; with the disk clip cache ``cold`` (an empty cache folder), ``warm``
  (the same folder after one epoch) and ``off``. Clips come out uint8 (3, 103, 224, 224); the
  backbone normalises on its device. ``ours_normalized`` (warm) adds that normalisation on the
  CPU, so the output is the float clip the official loader hands over.
- ``official``: CoRe's procedure (yuxumin/CoRe@f7881a9 ``datasets/MTLPair.py`` with
  hassony2/torch_videovision@785a810's train transforms) restated here: glob and sort the event
  folder, PIL-open the 103 JPEGs, random flip, ``Resize((455, 256))`` (PIL 256 wide x 455 tall,
  bilinear), random crop 224, ``ClipToTensor`` (a float64 array filled frame by frame, to float,
  /255) and ``Normalize``; the exemplar the same way. It has no cache: one number per worker count.
  Checked against the official code itself, run outside the repository on the same generated
  JPEGs (docs/performance.md, "The official code itself"): with the same seeds it yields the
  same tensors, and its clips per CPU second are within a few percent of the official loader's.

With workers, each epoch starts its workers, as the trainer does; over this bench's short
epochs (``2 x --samples`` clips) that start-up weighs on ours, whose clips cost little, far
more than in a real epoch (2118 clips for MTL-AQA).

For each case: ``clips_per_s`` (wall), ``cpu_s_per_clip`` (CPU seconds of the process and its
workers, from ``getrusage``) and ``clips_per_cpu_s`` (clips per second of one busy core).
``speedup_vs_official`` is ours (frames, warm cache) ÷ official in clips per CPU second, the
median over rounds and worker counts; ``speedup_vs_official_<cache>_w<n>`` each case's median.

Raw video: the dataset's video reader (``aqa.data.base.read_video``, CoRe's decode size
256x455, ``data.video_resize=decord``) on ``bench/decode.py``'s ``window`` plan (CoRe's 103
frames at a random place of a 30 s 640x360 H.264 file, GOP 250), in frames a second, against
decoding the whole file with ``ffmpeg -threads 0 -i F -f null -`` (``ffmpeg_null``) and with
PyAV in process without any conversion (``pyav_decode``): ``reader_vs_ffmpeg`` and
``reader_vs_pyav_decode``; ``reader_decord`` is the same read by decord itself (what resized
reads were before ``aqa.video_sws``), ``reader_native`` without the resize.

Prints progress on stderr and one JSON object last (also written to ``--out``). ``--quick``: one
round, 3 samples, 0 workers, each case once (about a minute).
"""

from __future__ import annotations

import argparse
import gc
import glob
import json
import os
import pickle
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo, not bench/ (its modules shadow stdlib names)

import torch  # noqa: E402
from torch.utils.data import DataLoader, Dataset, Subset  # noqa: E402

LENGTH, SHIFT, DD = 103, 3, 3.0  # CoRe's window, its temporal shift -3..3, one DD for all
END_FRAME = LENGTH + SHIFT  # file numbers 1..LENGTH+2*SHIFT hold every shifted window
FRAMES = LENGTH + 2 * SHIFT + 1  # one spare file after the last shift
W, H = 455, 256


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


# ----------------------------------------------------------------- generated data

def texture(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth random RGB texture with fine grain: JPEG sizes like real frames (~30 KB)."""
    from PIL import Image

    coarse = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
    grain = rng.integers(-12, 13, (height, width, 3), dtype=np.int16)
    return np.clip(smooth + grain, 0, 255).astype(np.uint8)


def write_mtl(root: Path, samples: int) -> list[tuple[int, int]]:
    """CoRe's MTL-AQA layout under ``root``; returns the (event, idx) keys (all training)."""
    from PIL import Image

    keys = [(e + 1, 1) for e in range(samples)]
    ann = {}
    for k, (event, idx) in enumerate(keys):
        rng = np.random.default_rng(k)
        tex = texture(rng, W + 2 * FRAMES, H)
        folder = root / "new" / "new_total_frames_256s" / f"{event:02d}"
        folder.mkdir(parents=True)
        for n in range(1, FRAMES + 1):  # the scene pans 2 pixels a frame
            Image.fromarray(tex[:, 2 * n:2 * n + W]).save(folder / f"{n:08d}.jpg", quality=95)
        ann[(event, idx)] = {"final_score": 60.0 + k, "difficulty": DD, "start_frame": 1,
                             "end_frame": END_FRAME, "judge_scores": np.full(7, 6.5),
                             "dive_number": "105B"}
    info = root / "info"
    info.mkdir(parents=True)
    for name, obj in (("final_annotations_dict_with_dive_number.pkl", ann),
                      ("train_split_0.pkl", keys), ("test_split_0.pkl", keys[:1])):
        (info / name).write_bytes(pickle.dumps(obj))
    return keys


def write_videos(root: Path, keys: list[tuple[int, int]]) -> list[Path]:
    """A trimmed H.264 clip per sample in the ``videos`` layout (and the same info/)."""
    (root / "videos").mkdir(parents=True)
    out = []
    for k, (event, idx) in enumerate(keys):
        path = root / "videos" / f"{event:02d}_{idx:02d}.mp4"
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size=640x360:rate=25", "-ss", str(k), "-frames:v", str(FRAMES),
                        "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "23", str(path)],
                       check=True)
        out.append(path)
    return out


# ----------------------------------------------------------------- the two loaders

def our_loader(root: Path, cache: str, workers: int, epoch: int = 1) -> DataLoader:
    """The trainer's training loader for CoRe on MTL-AQA at ``root`` (``cache``: a folder or off)."""
    from aqa.config import build_run_config
    from aqa.data.base import collate
    from aqa.registry import DATASETS, METHODS
    from aqa.train.loop import epoch_order

    cfg = build_run_config("core", "mtl_aqa", overrides=[f"data.root={root}",
                                                         f"data.disk_cache={cache}"])
    entry = DATASETS.get("mtl_aqa")
    data = entry.resolve(cfg.data, root)
    clips = entry.build(data, "train", train=True, seed=0)
    pairs = METHODS.get("core")(cfg).wrap_dataset(clips, "train", clips)
    order = epoch_order(len(pairs), 0, epoch)
    return DataLoader(Subset(pairs, order), batch_size=1, num_workers=workers, collate_fn=collate,
                      pin_memory=False, drop_last=False)


def normalized(batch: dict) -> dict:
    """The uint8 clips as the float clips the backbone sees (ImageNet normalisation)."""
    from aqa.data.transforms import IMAGENET, normalize

    return {**batch, "video": normalize(batch["video"].transpose(0, 1), IMAGENET).transpose(0, 1),
            "exemplar_video": normalize(batch["exemplar_video"].transpose(0, 1),
                                        IMAGENET).transpose(0, 1)}


class OfficialProcedure(Dataset):
    """CoRe's training pairs, its loading and torch_videovision's train transforms restated
    (see the module docstring): what one official training item costs."""

    MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]

    def __init__(self, root: Path, seed: int = 0):
        random.seed(seed)
        info = root / "info"
        self.labels = pickle.loads((info / "final_annotations_dict_with_dive_number.pkl").read_bytes())
        self.split = pickle.loads((info / "train_split_0.pkl").read_bytes())
        self.frames = root / "new" / "new_total_frames_256s"
        self.by_dd: dict = {}
        for key in self.split:
            self.by_dd.setdefault(self.labels[key]["difficulty"], []).append(key)

    def __len__(self) -> int:
        return len(self.split)

    def load_video(self, key) -> torch.Tensor:
        from PIL import Image

        files = sorted(glob.glob(os.path.join(self.frames, f"{key[0]:02d}", "*.jpg")))
        end = self.labels[key]["end_frame"] + random.randint(-SHIFT, SHIFT)
        images = [Image.open(files[end - LENGTH + i]) for i in range(LENGTH)]
        if random.random() < 0.5:
            images = [im.transpose(Image.FLIP_LEFT_RIGHT) for im in images]
        images = [im.resize((H, W), Image.BILINEAR) for im in images]  # 256 wide, 455 tall
        x1, y1 = random.randint(0, H - 224), random.randint(0, W - 224)
        images = [im.crop((x1, y1, x1 + 224, y1 + 224)) for im in images]
        array = np.zeros([3, len(images), 224, 224])  # float64, filled frame by frame
        for k, im in enumerate(images):
            array[:, k, :, :] = np.array(im).transpose(2, 0, 1)
        clip = torch.from_numpy(array).float().div(255)
        clip = clip.clone()
        mean, std = torch.as_tensor(self.MEAN), torch.as_tensor(self.STD)
        return clip.sub_(mean[:, None, None, None]).div_(std[:, None, None, None])

    def item(self, key) -> dict:
        score, dd = self.labels[key]["final_score"], self.labels[key]["difficulty"]
        return {"video": self.load_video(key), "final_score": score, "difficulty": dd,
                "completeness": score / dd}

    def __getitem__(self, i: int):
        key = self.split[i]
        data = self.item(key)
        candidates = self.by_dd[self.labels[key]["difficulty"]].copy()
        if len(candidates) > 1:
            candidates.pop(candidates.index(key))
        return data, self.item(candidates[random.randint(0, len(candidates) - 1)])


def official_loader(root: Path, workers: int) -> DataLoader:
    return DataLoader(OfficialProcedure(root), batch_size=1, shuffle=True, num_workers=workers,
                      drop_last=False)


# ----------------------------------------------------------------- measuring

def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (DataLoader workers once joined)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_epoch(loader: DataLoader, after=None) -> dict:
    """One pass over ``loader``: clips delivered (2 a pair), wall and CPU seconds."""
    gc.collect()
    c0, t0 = cpu_seconds(), time.perf_counter()
    clips = 0
    it = iter(loader)
    for batch in it:
        batch = after(batch) if after else batch
        videos = [batch["video"], batch["exemplar_video"]] if isinstance(batch, dict) else \
            [batch[0]["video"], batch[1]["video"]]
        clips += sum(v.shape[0] for v in videos)
    del it  # joins the workers, so their CPU time is counted
    wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    return {"clips": clips, "wall_s": wall, "cpu_s": cpu, "clips_per_s": clips / wall,
            "cpu_s_per_clip": cpu / clips, "clips_per_cpu_s": clips / cpu}


def frames_cases(root: Path, tmp: Path, workers: list[int], rnd: int) -> dict:
    """Every frame-layout case once, interleaved, for each worker count."""
    out = {}
    for w in workers:
        out[f"official_w{w}"] = run_epoch(official_loader(root, w))
        log(f"round {rnd} official w{w}: {out[f'official_w{w}']['clips_per_cpu_s']:.2f} clips/cpu-s")
        cache = tmp / f"cache_{rnd}_{w}"
        for name, folder in (("cold", cache), ("warm", cache), ("off", "off")):
            out[f"ours_{name}_w{w}"] = run_epoch(our_loader(root, str(folder), w))
            log(f"round {rnd} ours {name} w{w}: {out[f'ours_{name}_w{w}']['clips_per_cpu_s']:.2f} clips/cpu-s")
        out[f"ours_normalized_w{w}"] = run_epoch(our_loader(root, str(cache), w), normalized)
    return out


def reader_cases(long_video: Path, repeat: int) -> dict:
    """Frames a second of the dataset's video reader (``aqa.data.base.read_video``, CoRe's
    decode size 256x455, ``data.video_resize=decord``) on CoRe's 103-frame window of a 30 s
    video, against decoding the whole file bare: ``bench/decode.py``'s ``window`` plan, best of
    ``repeat`` interleaved rounds."""
    import av

    from aqa import video
    from aqa.data.base import read_video
    from bench.decode import interleaved_best

    n = video.probe(long_video).num_frames
    start = int(np.random.default_rng(0).integers(0, n - LENGTH))
    window = list(range(start, start + LENGTH))
    size = (H, W)  # tvv: 256 wide, 455 tall
    path = str(long_video)

    def pyav():
        with av.open(path) as c:
            c.streams.video[0].thread_type = "AUTO"
            for _ in c.decode(video=0):
                pass

    cases = {"reader": lambda: read_video(long_video, window, size),
             "reader_decord": lambda: video.read_frames(long_video, window, size, decoder="decord"),
             "reader_native": lambda: read_video(long_video, window, None),
             "pyav_decode": pyav,
             "ffmpeg_null": lambda: subprocess.run(["ffmpeg", "-loglevel", "error", "-threads", "0",
                                                    "-i", path, "-f", "null", "-"], check=True)}
    cases["reader"]()  # the file's index and decoder check, once a file as in training
    secs = interleaved_best(cases, repeat)
    out = {f"{k}_fps": (n if k in ("pyav_decode", "ffmpeg_null") else LENGTH) / v
           for k, v in secs.items()}
    for k in ("reader", "reader_decord", "reader_native"):
        out[f"{k}_vs_ffmpeg_null"] = out[f"{k}_fps"] / out["ffmpeg_null_fps"]
        out[f"{k}_vs_pyav_decode"] = out[f"{k}_fps"] / out["pyav_decode_fps"]
    return out


def median_of(rounds: list[dict], key: str, field: str) -> float:
    return statistics.median(r[key][field] for r in rounds)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one round, 3 samples, 0 workers")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=6, help="MTL-AQA samples generated")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "loader.json"))
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.samples, args.workers = 1, 3, [0]
    torch.set_num_threads(1)  # the loaders' work is per clip; a worker uses one core
    res: dict = {"host": {"cpus": os.cpu_count(), "python": platform.python_version(),
                          "torch": torch.__version__},
                 "samples": args.samples, "rounds": args.rounds, "workers": args.workers,
                 "clip": [3, LENGTH, 224, 224]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames_root, videos_root = tmp / "frames", tmp / "videos"
        log(f"writing {args.samples} samples x {FRAMES} JPEGs and {args.samples} videos in {tmp}")
        keys = write_mtl(frames_root, args.samples)
        videos_root.mkdir()
        (videos_root / "info").symlink_to(frames_root / "info")
        write_videos(videos_root, keys)
        from bench.decode import make_video

        long_video = tmp / "event.mp4"
        make_video(long_video, 12 if args.quick else 30, 250)
        rounds, vrounds, reads = [], [], []
        for rnd in range(args.rounds):
            rounds.append(frames_cases(frames_root, tmp, args.workers, rnd))
            vround = {}
            for w in args.workers:
                cache = tmp / f"vcache_{rnd}_{w}"
                for name, folder in (("cold", cache), ("warm", cache)):
                    vround[f"ours_{name}_w{w}"] = run_epoch(our_loader(videos_root, str(folder), w))
            vrounds.append(vround)
            reads.append(reader_cases(long_video, 1 if args.quick else 3))
            log(f"round {rnd} videos: {json.dumps({k: round(v['clips_per_cpu_s'], 2) for k, v in vround.items()})}"
                f" reader {reads[-1]['reader_fps']:.0f} fps (decord {reads[-1]['reader_decord_fps']:.0f}),"
                f" ffmpeg {reads[-1]['ffmpeg_null_fps']:.0f} fps, pyav {reads[-1]['pyav_decode_fps']:.0f} fps")
    frames: dict = {}
    for case in rounds[0]:
        frames[case] = {f: round(median_of(rounds, case, f), 4)
                        for f in ("clips_per_s", "cpu_s_per_clip", "clips_per_cpu_s")}
    res["frames"] = frames
    res["videos"] = {case: {f: round(median_of(vrounds, case, f), 4)
                            for f in ("clips_per_s", "cpu_s_per_clip", "clips_per_cpu_s")}
                     for case in vrounds[0]}
    ratios = {}
    for cache in ("cold", "warm", "off", "normalized"):
        for w in args.workers:
            per_round = [r[f"ours_{cache}_w{w}"]["clips_per_cpu_s"] / r[f"official_w{w}"]["clips_per_cpu_s"]
                         for r in rounds]
            ratios[f"speedup_vs_official_{cache}_w{w}"] = round(statistics.median(per_round), 3)
            ratios.setdefault(cache, []).extend(per_round)
    res.update({k: v for k, v in ratios.items() if k.startswith("speedup")})
    res["speedup_vs_official_cold"] = round(statistics.median(ratios["cold"]), 3)
    res["speedup_vs_official_normalized"] = round(statistics.median(ratios["normalized"]), 3)
    res["speedup_vs_official"] = round(statistics.median(ratios["warm"]), 3)
    res["reader"] = {k: round(statistics.median(r[k] for r in reads), 3) for k in reads[0]}
    res["reader_vs_ffmpeg"] = res["reader"]["reader_vs_ffmpeg_null"]
    res["reader_vs_pyav_decode"] = res["reader"]["reader_vs_pyav_decode"]
    text = json.dumps(res, indent=2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
