"""The training loop, one for every method: ``python -m aqa.train RUN_DIR``.

It reads ``run.json``, builds the method, data, optimizer and schedule, resumes from
``checkpoints/last.pt`` when there is one, trains, evaluates every ``eval_every`` epochs,
writes ``last.pt`` every epoch and ``best.pt`` by ``train.best_metric``, and logs events.

Events and checkpoints are written by rank 0 only. SIGTERM (or SIGINT) makes every rank stop
after the current optimizer update, write ``last.pt`` (mid-epoch if need be) and end with
status ``stopped``; ``aqa runs resume`` continues from there. A resumed attempt logs a
``start`` event with ``resumed_step``: events of the lost attempt after that step are
superseded (see aqa.runs.events), so every epoch's metrics appear exactly once.
"""

from __future__ import annotations

import faulthandler
import gc
import math
import os
import random
import sys
import threading
import time
import traceback
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from aqa.config import RunConfig, build_run_config, to_dict
from aqa.data.base import SampleSubset, holdout_indices
from aqa.errors import AQAError, ConfigError
from aqa.data.base import decoder_note
from aqa.log import log_to_stdout
from aqa.metrics import HIGHER_IS_BETTER
from aqa.evaluate import collate, predict_rows, write_predictions
from aqa.models.base import count_parameters
from aqa.registry import DATASETS, METHODS
from aqa.runs import store
from aqa.runs.events import EVENTS_FILE, EventWriter
from aqa.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from aqa.train.distributed import DistContext, stop_signals_to_main_thread
from aqa.train.optim import build_optimizer, build_scheduler
from aqa.train.stopflag import STOP
from aqa.train.sysmetrics import SPLIT as SYS_SPLIT, SystemMetrics


class _NullWriter:
    """What non-zero ranks write events to."""

    def emit(self, *a, **k) -> dict:
        return {}

    metric = emit

    def sync(self) -> None:
        pass

    def close(self) -> None:
        pass


def choose_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AQAError("train.device asks for CUDA but no GPU is visible; use train.device=cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled sample order of (1-based) ``epoch``: a pure function of seed and epoch, so a
    resumed run sees the same order and can skip the batches it already did."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _fmt_eta(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


COMPILE = ("off", "backbone")


def compile_backbone(model: torch.nn.Module, cfg: RunConfig) -> None:
    """``train.compile=backbone``: the backbone's forward compiled in place with
    ``torch.compile`` (``nn.Module.compile``: the module, its parameters and its state_dict keys
    stay as they are, so checkpoints do not change). Methods that run the backbone's stages
    themselves rather than its forward (TSA, Plain-Net) are not changed by it."""
    how, backend = cfg.train.compile, cfg.train.compile_backend
    if how not in COMPILE:
        raise ConfigError(f"train.compile={how!r} is not one of {', '.join(COMPILE)}")
    if how == "off":
        return
    backends = torch._dynamo.list_backends(exclude_tags=())
    if backend not in backends:
        raise ConfigError(f"train.compile_backend={backend!r} is not a torch.compile backend "
                          f"here; one of {', '.join(sorted(backends))}")
    backbone = getattr(model, "backbone", None)
    if not isinstance(backbone, torch.nn.Module):
        raise ConfigError(f"train.compile=backbone: the {cfg.method} model has no backbone "
                          "module to compile; use train.compile=off")
    backbone.compile(backend=backend)


class Trainer:
    def __init__(self, run_dir: Path, cfg: RunConfig, dist: DistContext):
        self.run_dir, self.cfg, self.dist = Path(run_dir), cfg, dist
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.pred_dir = self.run_dir / "predictions"
        self.device = choose_device(cfg.train.device, dist.local_rank)
        self.amp = cfg.train.amp and self.device.type == "cuda"
        self.events = EventWriter(self.run_dir / EVENTS_FILE) if dist.is_main else _NullWriter()
        self.stop = STOP
        self.epoch = 0          # epochs completed
        self.batch_in_epoch = 0  # batches of epoch+1 already done (after a mid-epoch stop)
        self.step = 0           # batches done in all (per process)
        self.best: dict = {"metric": cfg.train.best_metric, "value": None, "epoch": None}
        self._t0 = time.time()
        self._steps_this_attempt = 0
        # lr, step time, data wait, RSS, GPU use every log_every steps (aqa.train.sysmetrics)
        self.sysmetrics = (SystemMetrics(self.device)
                           if cfg.train.system_metrics and dist.is_main else None)

    # ------------------------------------------------------------------ setup
    def setup(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.train.seed + self.dist.rank)
        entry = DATASETS.get(cfg.dataset)
        if self.dist.is_main:
            entry.prepare(cfg.data)
        self.dist.barrier()
        train_clips = entry.build(cfg.data, "train", train=True, seed=cfg.train.seed)
        test_clips = entry.build(cfg.data, "test", train=False, seed=cfg.train.seed)
        self._train_clips, self._test_clips = train_clips, test_clips
        val_clips = None
        if cfg.train.val_fraction > 0:  # hold part of the training split out to pick best.pt
            kept, held = holdout_indices(len(train_clips), cfg.train.val_fraction, cfg.train.seed)
            plain = entry.build(cfg.data, "train", train=False, seed=cfg.train.seed)
            train_clips, val_clips = SampleSubset(train_clips, kept), SampleSubset(plain, held)
        self.method = METHODS.get(cfg.method)(cfg)
        # pair methods wrap the clip datasets to add exemplars drawn from the training split
        self.train_set = self.method.wrap_dataset(train_clips, "train", train_clips)
        self.test_set = self.method.wrap_dataset(test_clips, "test", train_clips)
        self.val_set = (self.method.wrap_dataset(val_clips, "val", train_clips)
                        if val_clips is not None else None)
        model = self.method.build_model().to(self.device)
        compile_backbone(model, cfg)
        self.params = count_parameters(model)
        self.trainable = count_parameters(model, trainable_only=True)
        self.model = model
        self.optimizer = build_optimizer(self.method.param_groups(model), cfg.optim)
        self.scheduler = build_scheduler(self.optimizer, cfg.optim, cfg.train.epochs)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.ddp = model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            # find_unused_parameters: parameters outside the loss's graph (I3D's logits layer in
            # every feature method, a frozen branch, a head unused this step) would otherwise
            # stop DDP at the second step ("Expected to have finished reduction ...")
            with stop_signals_to_main_thread():  # NCCL may make communicators here, lazily
                self.ddp = torch.nn.parallel.DistributedDataParallel(
                    model, device_ids=ids, find_unused_parameters=True)
        per_rank = math.ceil(len(self.train_set) / self.dist.world)
        self.steps_per_epoch = math.ceil(per_rank / cfg.train.batch_size)
        self.total_steps = self.steps_per_epoch * cfg.train.epochs

    def resume(self) -> bool:
        path = self.ckpt_dir / "last.pt"
        if not path.exists() or not self.method.resumable():
            return False
        state = load_checkpoint(path, map_location=self.device)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = state["epoch"], state["step"]
        self.batch_in_epoch = state.get("batch_in_epoch", 0)
        self.best = state["best"]
        set_rng_state(state["rng"])
        return True

    # ------------------------------------------------------------------ checkpoints
    def _state(self, metrics: dict, extra: dict | None = None) -> dict:
        return {**(extra or {}), "method": self.cfg.method, "config": to_dict(self.cfg),
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "step": self.step,
                "best": self.best, "metrics": metrics, "rng": rng_state(),
                "params": self.params}

    def _save(self, name: str, metrics: dict, extra: dict | None = None) -> None:
        if not self.dist.is_main:
            return
        path = self.ckpt_dir / name
        size = save_checkpoint(path, self._state(metrics, extra))
        self.events.emit("checkpoint", path=str(path.relative_to(self.run_dir)), epoch=self.epoch,
                         step=self.step, size=size, metrics=metrics)

    def save_epoch_end(self, metrics: dict, improved: bool) -> None:
        # best.pt first: a crash between the two leaves last.pt at the previous epoch, which
        # is redone on resume, rather than a last.pt that believes in a best.pt never written.
        if improved:  # with what scoring needs without the dataset (an exemplar bank)
            self._save("best.pt", metrics, self.method.checkpoint_extras(self.model))
        if self.cfg.train.keep_epoch_checkpoints:
            self._save(f"epoch_{self.epoch:03d}.pt", metrics)
        self._save("last.pt", metrics)
        self.events.sync()

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, dataset) -> tuple[dict, list[tuple[str, float, float]]]:
        """Metrics and (id, true, pred) rows of ``dataset``; the model is in eval mode and the
        method's ``on_eval_start`` has run."""
        idx = range(self.dist.rank, len(dataset), self.dist.world)  # this rank's shard
        rows = predict_rows(self.method, self.model, dataset, self.device,
                            self.cfg.train.batch_size, self.cfg.data.num_workers, idx,
                            autocast=self._autocast if self.amp else None)
        rows = [r for part in self.dist.gather(rows) for r in part]
        extras = {k: v for part in self.dist.gather(self.method.take_eval_extras())
                  for k, v in part.items()}
        y = [r[1] for r in rows]
        p = [r[2] for r in rows]
        return {**self.method.eval_metrics(p, y), **self.method.extra_metrics(extras)}, rows

    def _write_predictions(self, split: str, rows: list[tuple[str, float, float]]) -> None:
        if self.dist.is_main:
            write_predictions(self.pred_dir / f"{split}_epoch_{self.epoch:03d}.csv", rows,
                              self.method.predicted_classes([r[2] for r in rows]))

    def _is_better(self, value: float) -> bool:
        """The first evaluation always makes a best.pt (even with an undefined metric, e.g. rho
        of constant predictions); later ones must beat it with a finite value."""
        if self.best["epoch"] is None:
            return True
        if value is None or not math.isfinite(value):
            return False
        if self.best["value"] is None:
            return True
        if HIGHER_IS_BETTER.get(self.best["metric"], True):
            return value > self.best["value"]
        return value < self.best["value"]

    # ------------------------------------------------------------------ loop
    def _autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return nullcontext()

    def _eta(self) -> float | None:
        done = self._steps_this_attempt
        if done == 0:
            return None
        rate = done / max(1e-9, time.time() - self._t0)
        return (self.total_steps - self.step) / rate

    def _heartbeat_loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.cfg.train.heartbeat_s):
            self.events.emit("heartbeat", epoch=self.epoch, step=self.step,
                             total_steps=self.total_steps, eta_s=self._eta())

    def train_epoch(self, epoch: int) -> dict[str, float] | None:
        """Train (1-based) ``epoch``; returns mean losses, or None if a stop was requested."""
        cfg = self.cfg
        order = epoch_order(len(self.train_set), cfg.train.seed, epoch)[self.dist.rank::self.dist.world]
        start = self.batch_in_epoch * cfg.train.batch_size
        loader = DataLoader(Subset(self.train_set, order[start:]), batch_size=cfg.train.batch_size,
                            num_workers=cfg.data.num_workers, collate_fn=collate,
                            pin_memory=self.device.type == "cuda", drop_last=False)
        accum = cfg.optim.accum_steps
        sums: dict[str, float] = {}
        count = 0
        self.method.on_epoch_start(epoch)
        self.method.set_train_mode(self.ddp)  # train(), with frozen BN where the method says
        self.optimizer.zero_grad(set_to_none=True)
        n_batches = len(loader)
        batches = self.sysmetrics.batches(loader) if self.sysmetrics else loader
        for i, batch in enumerate(batches, start=1):
            batch = _to_device(batch, self.device)
            with self._autocast():
                losses = self.method.losses(self.ddp, batch)
            if not torch.isfinite(losses["loss"]):
                raise AQAError(f"the loss became {losses['loss'].item()} at step {self.step + 1}; "
                               "lower optim.lr or enable optim.grad_clip, then resume")
            loss = losses["loss"] if cfg.optim.accum_sum else losses["loss"] / accum
            self.scaler.scale(loss).backward()
            self.step += 1
            self.batch_in_epoch += 1
            self._steps_this_attempt += 1
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            count += 1
            boundary = i % accum == 0 or i == n_batches
            if boundary:
                if cfg.optim.grad_clip > 0:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
            if self.sysmetrics:
                self.sysmetrics.step_done()
            if self.step % cfg.train.log_every == 0:
                self._log_step(epoch, losses)
            if boundary and self._stop_agreed():
                return None
        return {k: v / max(1, count) for k, v in sums.items()}

    def _stop_agreed(self) -> bool:
        """Every rank stops if any rank was asked to, and all record the same signal."""
        self.stop.adopt(self.dist.agree_max(self.stop.code, self.device))
        return self.stop.requested

    def _log_step(self, epoch: int, losses: dict) -> None:
        for name, v in losses.items():
            self.events.metric(name, float(v.detach()), epoch=epoch, step=self.step, split="train")
        if self.sysmetrics:
            for name, v in self.sysmetrics.sample(self.optimizer).items():
                self.events.metric(name, v, epoch=epoch, step=self.step, split=SYS_SPLIT)
        eta = self._eta()
        lr = self.optimizer.param_groups[0]["lr"]
        rate = self._steps_this_attempt / max(1e-9, time.time() - self._t0)
        if self.dist.is_main:
            print(f"epoch {epoch}/{self.cfg.train.epochs} step {self.step}/{self.total_steps} "
                  f"({100 * self.step / max(1, self.total_steps):.0f}%) "
                  f"loss {float(losses['loss'].detach()):.4f} lr {lr:.2e} {rate:.2f} step/s "
                  f"ETA {_fmt_eta(eta)}", flush=True)
            self.events.emit("heartbeat", epoch=self.epoch, step=self.step,
                             total_steps=self.total_steps, eta_s=eta)

    def run(self) -> str:
        """Train to the end or to a stop; returns the final status."""
        cfg = self.cfg
        resumed = self.resume()
        self.events.emit("start", pid=os.getpid(), rank_count=self.dist.world,
                         device=str(self.device), amp=self.amp, epochs=cfg.train.epochs,
                         steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps,
                         params=self.params, trainable=self.trainable,
                         resumed_step=self.step if resumed else None,
                         resumed_epoch=self.epoch if resumed else None,
                         decoder=getattr(self._train_clips, "decoder", None))
        excluded = {split: list(getattr(ds, "excluded", ()) or ())
                    for split, ds in (("train", self._train_clips), ("test", self._test_clips))}
        if any(excluded.values()):  # --allow-missing: what was left out, in the run's record
            self.events.emit("excluded", samples=excluded,
                             count=sum(len(v) for v in excluded.values()))
        self.events.emit("status", status="running")
        self.events.sync()
        if self.dist.is_main:
            what = f"resumed at epoch {self.epoch}, step {self.step}" if resumed else "started"
            print(f"{cfg.method} on {cfg.dataset}: {what}; {self.params:,} parameters, "
                  f"{len(self.train_set)} train / {len(self.test_set)} test clips, "
                  f"device {self.device}", flush=True)
            note = decoder_note(getattr(self._train_clips, "decoder", ""), cfg.data)
            if note:
                print(f"note: {note}", flush=True)
            for split, ids in excluded.items():  # never silently: the log says what was left out
                if ids:
                    print(f"left out of {split} (data.allow_missing): {len(ids)} samples, e.g. "
                          f"{', '.join(ids[:5])}; see `python -m aqa doctor`", flush=True)
        while self.epoch < cfg.train.epochs:
            epoch = self.epoch + 1
            losses = self.train_epoch(epoch)
            if losses is None:  # stop requested mid-epoch
                self._save("last.pt", {})
                return "stopped"
            self.epoch, self.batch_in_epoch = epoch, 0
            self.scheduler.step()
            for name, v in losses.items():
                self.events.metric(f"epoch_{name}", v, epoch=epoch, step=self.step, split="train")
            metrics: dict = {}
            improved = False
            if self.method.should_evaluate(epoch):
                self.model.eval()
                self.method.on_eval_start(self.model, self.device)  # e.g. the exemplar pool
                splits = [("val", self.val_set)] if self.val_set is not None else []
                results = {}
                for split, dataset in splits + [("test", self.test_set)]:
                    results[split], rows = self.evaluate(dataset)
                    for name, v in results[split].items():
                        self.events.metric(name, v, epoch=epoch, step=self.step, split=split)
                    self._write_predictions(split, rows)
                self.model.train()
                metrics = results["test"]
                # best.pt: chosen on the held-out validation split when there is one (honest),
                # else on the test split (the papers' protocol)
                value = results["val" if splits else "test"].get(cfg.train.best_metric)
                improved = self._is_better(value)
                if improved:
                    finite = value is not None and math.isfinite(value)
                    self.best = {"metric": cfg.train.best_metric,
                                 "value": value if finite else None, "epoch": epoch,
                                 "selected_on": "val" if splits else "test", "metrics": metrics}
                if self.dist.is_main:
                    for split, m in results.items():
                        print(f"epoch {epoch} {split} " + " ".join(
                            f"{k} {v:.4f}" for k, v in m.items() if v is not None), flush=True)
            self.save_epoch_end(metrics, improved)
            if self._stop_agreed():
                return "stopped"
        return "finished"


def main(run_dir: str) -> int:
    log_to_stdout()  # the library's messages in stdout.log, as plain lines
    _dump_stacks_on_crash()
    run_path = Path(run_dir).resolve()
    dist = DistContext.from_env()
    trainer = None
    hb_stop, heartbeat = threading.Event(), None

    def end_heartbeat() -> None:  # before the final status: no heartbeat is written after it
        hb_stop.set()
        if heartbeat is not None:
            heartbeat.join(timeout=30)

    try:
        spec = store.read_run(run_path)
        cfg = build_run_config(spec["method"], spec["dataset"], values=spec["config"])
        trainer = Trainer(run_path, cfg, dist)
        trainer.stop.install()
        dist.init(trainer.device)
        trainer.setup()
        if dist.is_main:
            heartbeat = threading.Thread(target=trainer._heartbeat_loop, args=(hb_stop,),
                                         name="aqa-heartbeat", daemon=True)
            heartbeat.start()
        status = "stopped" if trainer.stop.requested else trainer.run()
        end_heartbeat()
        trainer.events.emit("status", status=status, epoch=trainer.epoch, step=trainer.step,
                            signal=trainer.stop.signal)
        if dist.is_main:
            print(f"run {status} at epoch {trainer.epoch}, step {trainer.step}", flush=True)
        return 0
    except AQAError as exc:
        end_heartbeat()
        print(f"error{_which(dist)}: {exc}", file=sys.stderr, flush=True)
        _emit_failure(trainer, run_path, dist, str(exc))
        return exc.exit_code
    except Exception as exc:  # a bug: keep the traceback in stdout.log, the reason in the event
        end_heartbeat()
        print(f"failed{_which(dist)}:", file=sys.stderr, flush=True)
        traceback.print_exc()
        _emit_failure(trainer, run_path, dist, f"{type(exc).__name__}: {exc}"[:2000])
        return 1
    finally:
        # The order matters on exit: the heartbeat thread has ended (above, or here when a
        # KeyboardInterrupt got through) before the event file closes and lets go of the
        # trainer; the model (and DistributedDataParallel, which holds the process group) is
        # freed before the group is destroyed, so no part of torch.distributed is left to the
        # interpreter's shutdown, where a rank could abort.
        end_heartbeat()
        if trainer is not None:
            trainer.events.close()
        trainer = None
        gc.collect()
        dist.close()


def _which(dist: DistContext) -> str:
    """" on rank R of W" in a run of several processes (they share stdout.log), else ""."""
    return f" on rank {dist.rank} of {dist.world}" if dist.enabled else ""


def _dump_stacks_on_crash() -> None:
    """A crash in native code (an abort, a segfault) leaves every thread's Python stack in
    stdout.log, where the run's other messages are."""
    if not faulthandler.is_enabled():
        try:
            faulthandler.enable()
        except (AttributeError, ValueError, OSError):  # a stderr without a file descriptor
            pass


def _emit_failure(trainer: Trainer | None, run_path: Path, dist: DistContext, message: str) -> None:
    if trainer is not None:
        trainer.events.emit("status", status="failed", message=message)
    elif dist.is_main and (run_path / store.RUN_JSON).is_file():
        writer = EventWriter(run_path / EVENTS_FILE)
        writer.emit("status", status="failed", message=message)
        writer.close()
