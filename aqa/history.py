"""The official implementations' training logs as runs of this project.

    python -m aqa import-log train.log --method core [--dataset mtl_aqa] [--name N]

Each official repository prints its own lines; :func:`parse_log` reads the one of the method's
repository and :func:`import_log` writes each training session it holds as a finished run (the
run store's ``run.json``, an event log of metric events with epoch and split, status finished),
so the index lists it and the app charts and compares it like a trained run.

What is read (the official formats, restated; epochs are counted from 0 there and from 1 here,
so official epoch e is epoch e + 1 in the run):

    core   stdout of main.py (scripts/train.sh tees it to logs/LOG_*.log):
           ``[Training][e/E][b/N] ... Batch_loss: x ...``      train loss at step e*N + b
           ``[Training] EPOCH: e, correlation: r, L2: a, RL2: b, lr1: ..``  train epoch_rho/l2/rl2
           ``[TEST] EPOCH: e, correlation: r, L2: a, RL2: b``   test rho, l2, rl2
           ``[TEST] correlation: r, L2: a, RL2: b``             a test-only run (epoch 1)
    tpt    stdout of train_*.py: ``EPOCH:e, Training:loss_cls: .., correlation: r, r_l2: q``
           (train), and after ``-------------epoch e`` the printed results table, whose
           Curr_rho / Curr_rl2 rows are the test rho and RL2 x 100 (per class and Avg on AQA-7)
    tsa    train.log (or stdout) of TSA-Net: ``Epoch: e  Current Best: ..`` then
           ``\\t train Acc: p`` / ``\\t test Acc: p`` (accuracy in percent)
    musdl  exp/{USDL,MUSDL}.log (MTL-AQA) and exp/TYPE/TASK/{avg,fold_k}.log (JIGSAWS):
           ``Epoch: e  Current Best: ..`` or ``Epoch: e``, then ``train correlation: r`` and
           ``test correlation: r`` (nan allowed); JIGSAWS' final ``.. final test correlation: r``
    pecop  stdout of train.py: ``[Epoch{e}/{i}] Loss: x Acc: y`` (every pf steps) and
           ``[pre-training] loss: x, acc: y`` (each epoch)
    gdlt   stdout of GDLT's and CoFInAl's main.py (CoFInAl's temp_log/.../train_log-*.txt):
           ``Epoch: e\tLoss: x\tTrain Coef: r\tTest Loss: m\tTest Coef: q[\tTest rl2: v]``:
           train epoch_loss and epoch_rho, test rho, l2 = m x 625 (the test MSE is in /25
           units: points squared here) and rl2 = v / 100 (printed x 100); a ``Namespace(...)``
           line (the options) starts a session

A logger header (``-----...NAME...-----``) or an epoch counter that goes back starts a new
session: the official loggers append, so one file often holds several runs. A line that starts
like a metric line but does not parse is an error naming the file and line; any other line the
format does not know (tracebacks, tqdm bars, warnings) is counted and reported, never silently
dropped.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from aqa.errors import ConfigError, DatasetError

FORMATS = ("core", "tpt", "tsa", "musdl", "pecop", "gdlt")
# the format each method's official repository prints, and the dataset its runs default to
METHOD_FORMAT = {"core": "core", "tpt": "tpt", "tsa": "tsa", "plain": "tsa", "usdl": "musdl",
                 "musdl": "musdl", "pecop": "pecop", "gdlt": "gdlt", "cofinal": "gdlt"}
DEFAULT_DATASET = {"core": "mtl_aqa", "tpt": "mtl_aqa", "tsa": "frfs", "musdl": "mtl_aqa",
                   "pecop": "pd4t", "gdlt": "rg"}
AQA7_CLASSES = ("diving", "gym_vault", "ski_big_air", "snowboard_big_air", "sync_diving_3m",
                "sync_diving_10m")


class LogFormatError(DatasetError):
    """A line that looks like a metric line of the format but does not parse."""


@dataclass
class Row:
    """One metric value: what a metric event holds."""
    epoch: int  # 1-based, as our runs count
    split: str  # train or test
    name: str  # rho, l2, rl2, accuracy, loss, epoch_rho, ...
    value: float
    step: int
    line: int  # 1-based line number in the file


@dataclass
class Session:
    """One training run found in a log."""
    first_line: int
    header: str = ""
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return max((r.epoch for r in self.rows), default=0)

    def best(self, name: str = "rho", split: str = "test", higher: bool = True) -> tuple | None:
        """(value, epoch) of the best finite ``name`` on ``split``."""
        vals = [(r.value, r.epoch) for r in self.rows
                if r.split == split and r.name == name and math.isfinite(r.value)]
        if not vals:
            return None
        return max(vals, key=lambda v: v[0]) if higher else min(vals, key=lambda v: v[0])


@dataclass
class ParsedLog:
    path: str
    format: str
    lines: int
    sessions: list[Session]
    not_understood: list[tuple[int, str]]  # (line number, text) of every line not understood

    def summary(self) -> dict:
        return {"format": self.format, "lines": self.lines, "sessions": len(self.sessions),
                "not_understood": len(self.not_understood),
                "not_understood_examples": [f"line {n}: {t[:100]}"
                                            for n, t in self.not_understood[:5]]}


# ---------------------------------------------------------------- the line formats

_NUM = r"(-?(?:nan|inf|[0-9.]+(?:e[-+]?\d+)?))"
_HEADER = re.compile(r"^-{30}(.*)-{30}$")  # logging header of TSA-Net / MUSDL's get_logger


def _float(text: str, where: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise LogFormatError(f"{where}: {text!r} is not a number") from None


class _Reader:
    """The state while one file is read: sessions, the current epoch, the step counter."""

    def __init__(self, path: str, fmt: str):
        self.path, self.fmt = path, fmt
        self.sessions: list[Session] = []
        self.not_understood: list[tuple[int, str]] = []
        self.epoch: int | None = None  # official (0-based) epoch of the lines being read
        self.step = 0
        self.lineno = 0
        self.state: dict = {}  # the format's own (TPT's results table, PECoP's step base)

    def where(self) -> str:
        return f"{self.path}:{self.lineno}"

    def session(self) -> Session:
        if not self.sessions:
            self.sessions.append(Session(first_line=self.lineno))
        return self.sessions[-1]

    def new_session(self, header: str = "") -> None:
        current = self.sessions[-1] if self.sessions else None
        if current is not None and not current.rows and not current.header:
            current.header = header
            return
        self.sessions.append(Session(first_line=self.lineno, header=header))
        self.epoch, self.step, self.state = None, 0, {}

    def at_epoch(self, official_epoch: int) -> None:
        """An epoch counter: one that goes back (or repeats) begins a new session."""
        if self.epoch is not None and official_epoch <= self.epoch and self.session().rows:
            self.new_session()
        self.epoch = official_epoch

    def add(self, split: str, name: str, value: float, epoch: int | None = None,
            step: int | None = None) -> None:
        e = self.epoch if epoch is None else epoch
        if e is None:
            raise LogFormatError(f"{self.where()}: a {split} {name} value before any epoch line")
        self.session().rows.append(Row(e + 1, split, name, value,
                                       self.step if step is None else step, self.lineno))


def _match(pattern: str, line: str, reader: _Reader, what: str) -> re.Match:
    m = re.match(pattern, line)
    if m is None:
        raise LogFormatError(f"{reader.where()}: malformed {what} line: {line.strip()[:160]!r}")
    return m


def _core_line(line: str, r: _Reader) -> bool:
    s = line.strip()
    if s.startswith("[Training][") and "Batch_loss" in s:
        m = _match(r"\[Training\]\[(\d+)/\d+\]\[(\d+)/(\d+)\].*Batch_loss:\s*" + _NUM, s, r,
                   "CoRe training batch")
        e, b, n = int(m[1]), int(m[2]), int(m[3])
        if r.epoch is None or e != r.epoch:
            r.at_epoch(e)
        r.step = e * n + b
        r.add("train", "loss", _float(m[4], r.where()))
        return True
    if s.startswith("[Training] EPOCH"):
        m = _match(r"\[Training\] EPOCH: (\d+), correlation: " + _NUM + r", L2: " + _NUM +
                   r", RL2: " + _NUM, s, r, "CoRe training epoch")
        e = int(m[1])
        if r.epoch is None or e != r.epoch:
            r.at_epoch(e)
        for name, g in (("epoch_rho", 2), ("epoch_l2", 3), ("epoch_rl2", 4)):
            r.add("train", name, _float(m[g], r.where()))
        return True
    if s.startswith("[TEST] EPOCH") and "best correlation" in s:
        _match(r"\[TEST\] EPOCH: \d+, best correlation: " + _NUM, s, r, "CoRe best-so-far")
        return True
    if s.startswith("[TEST] EPOCH"):
        m = _match(r"\[TEST\] EPOCH: (\d+), correlation: " + _NUM + r", L2: " + _NUM +
                   r", RL2: " + _NUM, s, r, "CoRe test epoch")
        e = int(m[1])
        if r.epoch is None or e != r.epoch:
            r.at_epoch(e)
        for name, g in (("rho", 2), ("l2", 3), ("rl2", 4)):
            r.add("test", name, _float(m[g], r.where()))
        return True
    if s.startswith("[TEST] correlation"):  # tools/runner.py test(): a test-only run
        m = _match(r"\[TEST\] correlation: " + _NUM + r", L2: " + _NUM + r", RL2: " + _NUM, s, r,
                   "CoRe test")
        for name, g in (("rho", 1), ("l2", 2), ("rl2", 3)):
            epoch = r.epoch if r.epoch is not None else 0
            r.add("test", name, _float(m[g], r.where()), epoch=epoch)
        return True
    known = ("[TEST][", "Start validating epoch", "-----New best found!-----", "Trainer start",
             "Tester start", "Load config yaml from", "Create experiment path", "Save the Config",
             "Namespace(", "Using CLASS idx", "resume ckpts @", "Resume yaml from",
             "Failed to resume", "Loading weights from", "ckpts @", "no checkpoint file",
             "check done", "Using I3D backbone", "loading ckpt done")
    return s.startswith(known)


_TPT_TABLE_ROWS = ("Curr_rho", "Best_rho", "Curr_rl2", "Best_rl2", "Best_corr_epoch",
                   "Best_l2_epoch")


def _tpt_line(line: str, r: _Reader) -> bool:
    s = line.strip()
    state = r.state
    if state.get("columns") is not None:  # inside a printed results table
        first = s.split()[0] if s else ""
        if first == "Corr." or first in AQA7_CLASSES + ("metrics", "Avg", "..."):
            state["columns"] = [c for c in s.rstrip("\\").split() if c != "Corr."]
            return True
        m = re.match(r"^(\d)\s+(.*?)\s*\\?$", s)
        if m:
            tokens = m[2].split()
            if tokens and tokens[0] in _TPT_TABLE_ROWS:
                state["row_name"] = tokens.pop(0)
            else:
                state["row_name"] = _TPT_TABLE_ROWS[int(m[1])] if int(m[1]) < 6 else None
            cols = state["columns"]
            if len(tokens) != len(cols):
                raise LogFormatError(f"{r.where()}: results table row has {len(tokens)} values "
                                     f"for {len(cols)} columns: {s[:160]!r}")
            for col, tok in zip(cols, tokens):
                if col == "..." or tok == "...":
                    continue
                value = _float(tok, r.where())
                row = state["row_name"]
                if row in ("Curr_rho", "Curr_rl2"):
                    base = "rho" if row == "Curr_rho" else "rl2"
                    value = value if base == "rho" else value / 100.0  # TPT prints RL2 x 100
                    name = base if col in ("metrics", "Avg") else f"{base}_{col}"
                    r.add("test", name, value)
            return True
        if re.match(r"^\[\d+ rows x \d+ columns\]$", s) or not s:
            return True
        state["columns"] = None
    if s.startswith("EPOCH:") and "Training" in s:
        m = _match(r"EPOCH:(\d+), Training:(.*)$", s, r, "TPT training epoch")
        e = int(m[1])
        if r.epoch is None or e != r.epoch:
            r.at_epoch(e)
        pairs = re.findall(r"(loss_\w+|correlation|r_l2):\s*" + _NUM, m[2])
        if not any(k == "correlation" for k, _ in pairs):
            raise LogFormatError(f"{r.where()}: malformed TPT training epoch line: {s[:160]!r}")
        for key, val in pairs:
            name = {"correlation": "epoch_rho", "r_l2": "epoch_rl2"}.get(key, f"epoch_{key}")
            value = _float(val, r.where())
            r.add("train", name, value / 100.0 if key == "r_l2" else value)
        return True
    if s.startswith("-------------epoch"):
        m = _match(r"-------------epoch (\d+)$", s, r, "TPT results")
        e = int(m[1])
        if r.epoch is None or e != r.epoch:
            r.at_epoch(e)
        r.state["columns"] = []
        return True
    if re.match(r"^Start Epoch \d+, time:", s) or s in ("results updated", "check done", "hh") or \
            re.match(r"^\(\d+, \d+\)$", s) or s.startswith(("num_cluster:", "encode video:")):
        if s.startswith("Start Epoch"):
            e = int(s.split()[2].rstrip(","))
            if r.epoch is not None and e <= r.epoch and r.session().rows:
                r.new_session()
        return True
    return False


def _tsa_line(line: str, r: _Reader) -> bool:
    s = line.strip()
    m = _HEADER.match(s)
    if m:
        r.new_session(m[1])
        return True
    if s.startswith("Epoch:"):
        m = _match(r"Epoch: (\d+)\s+Current Best: " + _NUM + r" at epoch (\d+)$", s, r,
                   "TSA-Net epoch")
        r.at_epoch(int(m[1]))
        return True
    if re.match(r"^(train|test) Acc", s):
        m = _match(r"(train|test) Acc: " + _NUM + r"$", s, r, "TSA-Net accuracy")
        name = "accuracy" if m[1] == "test" else "epoch_accuracy"
        r.add(m[1], name, _float(m[2], r.where()) / 100.0)  # printed in percent
        return True
    return s == "-----New best found!-----" or s.startswith("----- Pre-trained weight loaded")


def _musdl_line(line: str, r: _Reader) -> bool:
    s = line.strip()
    m = _HEADER.match(s)
    if m:
        r.new_session(m[1])
        return True
    if s.startswith("Epoch:"):
        m = _match(r"Epoch: (\d+)(?:\s+Current Best: " + _NUM + r" at epoch (\d+))?$", s, r,
                   "MUSDL epoch")
        r.at_epoch(int(m[1]))
        return True
    if re.match(r"^(train|test) correlation", s):
        m = _match(r"(train|test) correlation: " + _NUM + r"$", s, r, "MUSDL correlation")
        r.add(m[1], "rho" if m[1] == "test" else "epoch_rho", _float(m[2], r.where()))
        return True
    if "final test correlation" in s:  # JIGSAWS: mean test rho of the last ten epochs
        m = _match(r"(\S+) (\S+) final test correlation: " + _NUM + r"$", s, r, "MUSDL final")
        r.session().notes.append(f"{m[1]} {m[2]}: final test correlation (mean of the last 10 "
                                 f"epochs) {float(m[3]):.4f}")
        return True
    return s == "-----New best found!-----" or bool(re.match(r"^-+$", s))


def _pecop_line(line: str, r: _Reader) -> bool:
    s = line.strip()
    st = r.state
    if s.startswith("[Epoch"):  # loss is a tensor printed with str(): tensor(x, device=..)
        m = _match(r"\[Epoch(\d+)/(\d+)\] Loss: (?:tensor\()?" + _NUM + r".*Acc: " + _NUM, s, r,
                   "PECoP step")
        e, i = int(m[1]) - 1, int(m[2])  # printed as epoch + 1; i is the batch index
        if r.epoch is None or e != r.epoch:
            r.at_epoch(e)
            st["base"], st["done"] = st.get("next_base", 0), False
        r.step = st["base"] + i + 1
        st["next_base"] = max(st.get("next_base", 0), r.step)
        r.add("train", "loss", _float(m[3], r.where()))
        r.add("train", "acc", _float(m[4], r.where()))
        return True
    if s.startswith("[pre-training]"):
        m = _match(r"\[pre-training\] loss: " + _NUM + r", acc: " + _NUM + r"$", s, r,
                   "PECoP epoch")
        if r.epoch is None or st.get("done"):  # an epoch without printed steps
            r.at_epoch(0 if r.epoch is None else r.epoch + 1)
        r.add("train", "epoch_loss", _float(m[1], r.where()))
        r.add("train", "epoch_acc", _float(m[2], r.where()))
        st["done"] = True
        return True
    return s.startswith(("len of training data:", "Let's use")) or \
        s in ("cpu", "cuda", "cuda:0") or bool(re.match(r"^\w+_sr_\d+_\w+_lr_", s))


_GDLT_SCALE = 25.0  # the official loader's division: the test MSE is in (points / 25)^2


def _gdlt_line(line: str, r: _Reader) -> bool:
    s = line.strip()
    if s.startswith("Namespace("):
        m = re.search(r"model_name='([^']*)'", s)
        r.new_session(m[1] if m else "")
        return True
    if s.startswith("Epoch:"):
        m = _match(r"Epoch: (\d+)\s+Loss: " + _NUM + r"\s+Train Coef: " + _NUM + r"\s+Test Loss: "
                   + _NUM + r"\s+Test Coef: " + _NUM + r"(?:\s+Test rl2: " + _NUM + r")?$", s, r,
                   "GDLT/CoFInAl epoch")
        r.at_epoch(int(m[1]))
        w = r.where()
        r.add("train", "epoch_loss", _float(m[2], w))
        r.add("train", "epoch_rho", _float(m[3], w))
        r.add("test", "rho", _float(m[5], w))
        r.add("test", "l2", _float(m[4], w) * _GDLT_SCALE ** 2)
        if m[6] is not None:
            r.add("test", "rl2", _float(m[6], w) / 100.0)
        return True
    if s.startswith(("Best Test", "Test Loss:")):
        r.session().notes.append(s)
        return True
    return bool(re.match(r"^(=+.*=+|\d+|cofinal(_\d)?\.\.\.|device:.*|load param:.*)$", s))


def parse_log(path: str | Path, fmt: str) -> ParsedLog:
    """Read the official log ``path`` in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown log format {fmt!r}; known: {', '.join(FORMATS)}")
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no file {path}")
    r = _Reader(str(path), fmt)
    text = path.read_text(errors="replace").replace("\r", "\n")  # tqdm redraws with \r
    lines = text.split("\n")
    for r.lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if fmt == "core":
            ok = _core_line(line, r)
        elif fmt == "tpt":
            ok = _tpt_line(line, r)
        elif fmt == "tsa":
            ok = _tsa_line(line, r)
        elif fmt == "musdl":
            ok = _musdl_line(line, r)
        elif fmt == "gdlt":
            ok = _gdlt_line(line, r)
        else:
            ok = _pecop_line(line, r)
        if not ok:
            r.not_understood.append((r.lineno, line.rstrip()))
    sessions = [s for s in r.sessions if s.rows]
    if not sessions:
        raise LogFormatError(f"{path}: no {fmt} metric lines found ({len(r.not_understood)} "
                             f"lines not understood"
                             + (f", the first: line {r.not_understood[0][0]}: "
                                f"{r.not_understood[0][1][:100]!r}" if r.not_understood else "")
                             + f"); is it a {fmt} log? (--method chooses the format)")
    return ParsedLog(str(path), fmt, len([ln for ln in lines if ln.strip()]), sessions,
                     r.not_understood)


# ---------------------------------------------------------------- runs

def import_log(path: str | Path, method: str, runs_dir: str | Path, *, dataset: str | None = None,
               name: str | None = None, overrides: list[str] | None = None,
               fmt: str | None = None) -> dict:
    """Write each session of the official log ``path`` as a finished ``method`` run; returns
    {"runs": [{"run_id", "epochs", "best", ...}], "log": ParsedLog.summary()}."""
    from aqa.config import build_run_config, to_dict
    from aqa.registry import METHODS
    from aqa.runs import store
    from aqa.runs.events import EVENTS_FILE, EventWriter

    METHODS.get(method)  # an unknown method is a ConfigError naming the registered ones
    fmt = fmt or METHOD_FORMAT.get(method)
    if fmt is None:
        raise ConfigError(f"no official log format for method {method!r}; logs of "
                          f"{', '.join(sorted(METHOD_FORMAT))} import (or give --format)")
    parsed = parse_log(path, fmt)
    dataset = dataset or DEFAULT_DATASET[fmt]
    runs_dir = store.resolve_runs_dir(runs_dir)
    out = []
    many = len(parsed.sessions) > 1
    for k, sess in enumerate(parsed.sessions, 1):
        names = {r.name for r in sess.rows if r.split == "test"}
        sets = [f"train.epochs={max(1, sess.epochs)}"]
        if "accuracy" in names:
            sets.append("train.best_metric=accuracy")
        cfg = build_run_config(method, dataset, overrides=sets + list(overrides or []))
        label = (name or Path(path).name) + (f" #{k}" if many else "")
        info = {"file": str(Path(path).resolve()), "format": fmt, "session": k,
                "sessions": len(parsed.sessions), "first_line": sess.first_line,
                "header": sess.header, "metric_lines": len({r.line for r in sess.rows}),
                "not_understood_in_file": len(parsed.not_understood), "notes": sess.notes}
        run_path = store.create_run(runs_dir, to_dict(cfg),
                                    argv=["aqa", "import-log", str(path), "--method", method],
                                    extra={"name": label, "imported_from": info["file"],
                                           "imported_log": info})
        events = EventWriter(run_path / EVENTS_FILE)
        events.emit("start", imported=True, epochs=cfg.train.epochs, total_steps=0)
        events.emit("status", status="running")
        for row in sess.rows:
            events.metric(row.name, row.value, epoch=row.epoch, step=row.step, split=row.split)
        events.emit("status", status="finished",
                    message=f"imported {label} ({fmt} log, {sess.epochs} epochs)")
        events.close()
        store.write_job(run_path, {"executor": "import", "state": "done", "started": time.time()})
        metric = "accuracy" if "accuracy" in names else "rho"
        best = sess.best(metric)
        out.append({"run_id": run_path.name, "name": label, "epochs": sess.epochs,
                    "metrics": len(sess.rows), "best": {"metric": metric,
                                                        "value": best[0] if best else None,
                                                        "epoch": best[1] if best else None},
                    "notes": sess.notes})
    return {"runs": out, "log": parsed.summary()}
