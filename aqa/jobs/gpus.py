"""What GPUs the machine has, and choosing some for a run."""

from __future__ import annotations

import shutil
import subprocess

from aqa.errors import JobError


def probe_gpus() -> list[dict]:
    """[{index, name, total_mb, free_mb, util}] from nvidia-smi; [] on a machine without GPUs."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "--query-gpu=index,name,memory.total,memory.free,utilization.gpu",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 5:
            gpus.append({"index": int(parts[0]), "name": parts[1], "total_mb": float(parts[2]),
                         "free_mb": float(parts[3]), "util": float(parts[4] or 0)})
    return gpus


def parse_gpus(text: str | None) -> tuple[list[int] | None, int]:
    """``--gpus`` syntax: "0,2" asks for those GPUs, "2" for any two, "" / "0" / None for none.

    Returns (explicit indices or None, count).
    """
    if text is None or text.strip() in ("", "0", "cpu"):
        return None, 0
    text = text.strip()
    try:
        if "," in text:
            idx = [int(x) for x in text.split(",") if x.strip()]
            if len(set(idx)) != len(idx) or min(idx) < 0:
                raise ValueError
            return idx, len(idx)
        return None, int(text)
    except ValueError:
        raise JobError(f"--gpus {text!r}: give a count (2 = any two) or a list of indices "
                       "(0,2 = those two)") from None


def choose_gpus(text: str | None, inventory: list[dict]) -> list[int]:
    """Indices for a run: the ones asked for, or the ``count`` with the most free memory."""
    explicit, count = parse_gpus(text)
    if count == 0:
        return []
    have = {g["index"]: g for g in inventory}
    if explicit is not None:
        missing = [i for i in explicit if i not in have]
        if missing:
            raise JobError(f"GPU(s) {missing} not found; this machine has "
                           f"{sorted(have) or 'no GPUs'} (see `nvidia-smi`)")
        return explicit
    if count > len(have):
        raise JobError(f"asked for {count} GPU(s) but this machine has {len(have)}")
    ranked = sorted(inventory, key=lambda g: -g["free_mb"])
    return sorted(g["index"] for g in ranked[:count])
