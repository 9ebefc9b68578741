"""Cross-validation protocols: the literature's evaluation schemes as named groups of runs.

A protocol turns one request (method, data root, config overrides) into the runs the
literature trains for one reported number, and says how their test numbers form it:

============== ======== ============================================================ =========
name           dataset  one run per                                                  aggregate
============== ======== ============================================================ =========
jigsaws-4fold  jigsaws  fold of MUSDL's four (``data.scheme=4fold``), a task          mean
jigsaws-loso   jigsaws  supertrial left out (5 folds), a task                         mean
jigsaws-louo   jigsaws  user left out (8 folds; 7 for Needle_Passing), a task         mean
aqa7-per-class aqa7     class (6: its own Split_4 train/test, ``data.class_name``)     fisher_z
============== ======== ============================================================ =========

A JIGSAWS protocol runs on one task (or each of the three: one group a task). The task's
number is the arithmetic mean of its folds' Spearman rho (MUSDL averages its four folds'
rho); the number across tasks, as the papers' "Avg." column, is the Fisher-z mean of the
tasks' numbers (:func:`across_tasks`). AQA-7's number is the Fisher-z mean of the six classes'
rho (its "Avg. Corr."). Every number these functions return carries its protocol's name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from aqa import metrics as M
from aqa.errors import ConfigError, DatasetError, RunError


@dataclass(frozen=True)
class Protocol:
    name: str
    dataset: str       # the registered dataset it runs on
    kind: str          # "folds" (cross-validation) or "classes" (one model a class)
    aggregate: str     # how the members' rho form the number: "mean" or "fisher_z"
    scheme: str = ""   # data.scheme of the members (JIGSAWS)
    about: str = ""    # one line for `aqa protocol list`


PROTOCOLS = {p.name: p for p in (
    Protocol("jigsaws-4fold", "jigsaws", "folds", "mean", "4fold",
             "JIGSAWS, a task: MUSDL's four folds (info/splits.pkl; its published lists without "
             "one), one run a test fold; the mean of the four folds' rho"),
    Protocol("jigsaws-loso", "jigsaws", "folds", "mean", "loso",
             "JIGSAWS, a task: leave one supertrial out (5 folds: the i-th repetition of every "
             "user is the test split); the mean of the folds' rho"),
    Protocol("jigsaws-louo", "jigsaws", "folds", "mean", "louo",
             "JIGSAWS, a task: leave one user out (8 folds, B..I; 7 for Needle_Passing, which "
             "has no user G); the mean of the folds' rho"),
    Protocol("aqa7-per-class", "aqa7", "classes", "fisher_z",
             about="AQA-7: one run a class (its own Split_4 train/test, the six sports); the "
                   "Fisher-z mean of the classes' rho"),
)}

# Config keys a protocol sets for each member: a --set of one of them would be overwritten.
MEMBER_KEYS = {"jigsaws": ("data.task", "data.scheme", "data.fold"), "aqa7": ("data.class_name",)}


@dataclass(frozen=True)
class Member:
    label: str                   # what the run tests: "user B", "supertrial 3", "fold 0", "diving"
    overrides: tuple[str, ...]   # the config overrides that make this run this member


def get(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise ConfigError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)} "
                          f"(`aqa protocol list`)")
    return PROTOCOLS[name]


def check_dataset(protocol: Protocol, dataset: str | None) -> None:
    """A ConfigError when ``dataset`` (given by the user) is not the protocol's."""
    if dataset and dataset != protocol.dataset:
        supported = [p.name for p in PROTOCOLS.values() if p.dataset == dataset]
        raise ConfigError(f"protocol {protocol.name} runs on the {protocol.dataset} dataset, not "
                          f"{dataset}; " + (f"{dataset}'s protocols: {', '.join(supported)}"
                                            if supported else f"{dataset} has no protocol"))


def tasks_of(protocol: Protocol, task: str | None) -> list[str]:
    """The JIGSAWS tasks a request names (``suturing``, ``Needle-Passing``, the papers' ``S``,
    ``NP``, ``KT``, ``all``, a comma list), in the dataset's spelling; ``[""]`` for a protocol
    without tasks."""
    from aqa.data.jigsaws import TASKS

    if protocol.dataset != "jigsaws":
        if task:
            raise ConfigError(f"protocol {protocol.name} has no tasks; drop --task")
        return [""]
    if not task:
        raise ConfigError(f"protocol {protocol.name} runs on one JIGSAWS task: give --task "
                          f"{', '.join(TASKS)} or all")
    by_key = {t.lower(): t for t in TASKS}
    by_key.update({"".join(w[0] for w in t.split("_")).lower(): t for t in TASKS})  # s, np, kt
    if task.strip().lower() == "all":
        return list(TASKS)
    out = []
    for part in task.split(","):
        key = part.strip().lower().replace("-", "_").replace(" ", "_")
        if key not in by_key:
            raise ConfigError(f"--task {part.strip()!r}: not a JIGSAWS task; choose "
                              f"{', '.join(TASKS)} (or S, NP, KT), a comma list, or all")
        if by_key[key] not in out:
            out.append(by_key[key])
    return out


def check_overrides(protocol: Protocol, overrides: list[str]) -> None:
    """A --set of a key the protocol sets per member is an error (it would be overwritten)."""
    keys = MEMBER_KEYS[protocol.dataset]
    for o in overrides:
        key = o.partition("=")[0].strip()
        if key in keys:
            raise ConfigError(f"--set {o}: protocol {protocol.name} sets {key} for each of its "
                              f"runs; drop it ({'--task' if key == 'data.task' else 'the protocol'}"
                              f" chooses)")


def members(protocol: Protocol, data_cfg, task: str = "") -> list[Member]:
    """The runs of ``protocol`` on a resolved data config (JIGSAWS: of ``task``), in order.

    JIGSAWS folds are read from the data (label.pkl, splits.pkl): a fold without trials (user G
    of Needle_Passing) is not a member. AQA-7's split files must have train and test samples
    of every class (a DatasetError names the classes that have none)."""
    if protocol.dataset == "jigsaws":
        from aqa.data.jigsaws import folds_of

        cfg = replace(data_cfg, task=task, scheme=protocol.scheme, fold=0)
        return [Member(label, (f"data.task={task}", f"data.scheme={protocol.scheme}",
                               f"data.fold={k}"))
                for k, label, _ in folds_of(cfg)]
    from aqa.data.aqa7 import class_counts

    counts = class_counts(data_cfg)
    empty = [f"{name} ({n_train} train, {n_test} test)" for name, (n_train, n_test) in counts.items()
             if not n_train or not n_test]
    if empty:
        raise DatasetError(f"{protocol.name} trains and tests one model a class, but the split "
                           f"files of {data_cfg.root} have no samples of {', '.join(empty)}")
    return [Member(name, (f"data.class_name={name}",)) for name in counts]


def across_tasks(per_task: dict[str, float | None]) -> float | None:
    """JIGSAWS' "Avg." over tasks: the Fisher-z mean of the tasks' numbers (None while a task
    has none, or has ±1, where Fisher z is undefined)."""
    values = list(per_task.values())
    if not values or any(v is None or abs(v) >= 1 for v in values):
        return None
    return M.fisher_z_mean(values)


def group_label(protocol: Protocol, task: str = "") -> str:
    """The group's ``group.protocol``, shown in Compare: ``jigsaws-louo Suturing``,
    ``aqa7-per-class``."""
    return f"{protocol.name} {task}".strip()


def parse_label(label: str) -> tuple[Protocol, str] | None:
    """``group.protocol`` back to (protocol, task); None for a group of no protocol (seeds)."""
    name, _, task = (label or "").partition(" ")
    return (PROTOCOLS[name], task) if name in PROTOCOLS else None


def resolve_data(protocol: Protocol, runs_dir: str | Path, method: str, data_root: str | None,
                 overrides: list[str], values: dict | None = None):
    """The resolved data config a request gives (its errors are the submit's, raised first)."""
    from aqa.config import build_run_config
    from aqa.registry import DATASETS

    extra = [f"data.root={data_root}"] if data_root else []
    cfg = build_run_config(method, protocol.dataset, overrides=list(overrides) + extra,
                           values=values)
    return DATASETS.get(protocol.dataset).resolve(cfg.data, Path(runs_dir))


def submit_protocol(runs_dir: str | Path, name: str, request, task: str | None = None) -> list[dict]:
    """Submit protocol ``name`` as groups of runs (``aqa.groups.submit_group``): one group, or one
    a task for ``task="all"`` or a comma list. ``request`` is an ``aqa.jobs.SubmitRequest`` (method,
    overrides, data root, executor...); its dataset may be empty (the protocol's) and must be the
    protocol's otherwise. Every group's members are worked out before any run is created.

    Returns ``[{"group_id", "protocol", "task", "aggregate", "folds" (where the folds come
    from, in words), "runs": [{"member", "run_id"}]}]``."""
    from aqa.groups import submit_group

    protocol = get(name)
    check_dataset(protocol, request.dataset)
    request = replace(request, dataset=protocol.dataset)
    check_overrides(protocol, list(request.overrides or []))
    tasks = tasks_of(protocol, task)
    data = resolve_data(protocol, runs_dir, request.method, request.data_root,
                        list(request.overrides or []), request.values)
    plans = [(t, members(protocol, data, t)) for t in tasks]
    out = []
    for t, group in plans:
        sid = f"{request.submission_id}:{t}" if request.submission_id and t else request.submission_id
        gid, ids = submit_group(runs_dir, replace(request, submission_id=sid),
                                [(m.label, list(m.overrides)) for m in group],
                                kind=protocol.kind, protocol=group_label(protocol, t),
                                aggregate=protocol.aggregate)
        out.append({"group_id": gid, "protocol": protocol.name, "task": t,
                    "aggregate": protocol.aggregate, "folds": folds_source(protocol, data, t),
                    "runs": [{"member": m.label, "run_id": i} for m, i in zip(group, ids)]})
    return out


def folds_source(protocol: Protocol, data_cfg, task: str) -> str:
    """Where a group's folds come from, in words (JIGSAWS 4-fold: MUSDL's lists or the data
    folder's own splits.pkl, said when it differs from MUSDL's)."""
    if protocol.scheme == "4fold":
        from aqa.data import jigsaws

        return jigsaws.folds_source(replace(data_cfg, task=task, scheme="4fold"))
    if protocol.dataset == "jigsaws":
        return f"built from the trial names of info/label.pkl ({protocol.scheme})"
    return "each class's samples of the Split_4 train/test lists"


def protocol_groups(runs: list[dict]) -> dict[str, dict]:
    """The protocol groups among index rows ``runs``: ``{group id: its group section}``."""
    from aqa.compare import group_of

    out = {}
    for r in runs:
        group = group_of(r.get("config"))
        if group and parse_label(group.get("protocol", "")):
            out.setdefault(group["id"], group)
    return out


EPOCHS = ("best", "last", "last10")  # which test number of each run `protocol show` takes
LAST_N = 10  # MUSDL's JIGSAWS "final test correlation": the mean of the last ten epochs


def last_mean(metrics: list[dict], n: int) -> dict:
    """The mean test rho of a run's last ``n`` epochs (index metric rows), as row fields: ``rho``,
    ``epoch`` ("71-80"); ``l2``/``rl2x100`` None (not averaged). Missing or NaN values of those
    epochs are left out of the mean (a NaN epoch is a constant prediction)."""
    import math

    by_epoch = {m["epoch"]: m["value"] for m in metrics
                if m.get("name") == "rho" and m.get("split") == "test" and m.get("epoch") is not None}
    last = sorted(by_epoch)[-n:]
    values = [by_epoch[e] for e in last if by_epoch[e] is not None and math.isfinite(by_epoch[e])]
    return {"rho": sum(values) / len(values) if values else None, "l2": None, "rl2x100": None,
            "epoch": f"{last[0]}-{last[-1]}" if last else None}


def group_result(runs_dir: str | Path, group_id: str, epoch: str = "best",
                 runs: list[dict] | None = None) -> dict:
    """A protocol group's number and its members' (the folds or classes), each labelled.

    ``epoch`` (:data:`EPOCHS`): ``best`` (each run's best epoch, by its own selection rule),
    ``last``, or ``last10``: each run's mean test rho over its last ten epochs (MUSDL's JIGSAWS
    number: the mean over the last ten epochs of the folds' mean is the mean over the folds of
    each fold's last-ten mean; L2 and RL2 are then left out). The number is Compare's group row
    (``aqa.compare.fold_group``): finished members only, mean or Fisher-z mean of their rho,
    with ``rho_std``. ``runs``: the index rows (read when None)."""
    from aqa import compare
    from aqa.runs import index

    if epoch not in EPOCHS:
        raise ConfigError(f"--epoch {epoch!r}: expected one of {', '.join(EPOCHS)}")
    runs = index.list_runs(runs_dir) if runs is None else runs
    ids = compare.group_member_ids(runs, group_id)
    if not ids:
        known = ", ".join(protocol_groups(runs)) or "none yet (`aqa protocol run ...`)"
        raise RunError(f"no runs in group {group_id!r}; protocol groups here: {known}")
    by_id = {r["id"]: r for r in runs}
    rows = []
    for run_id in sorted(ids, key=lambda i: by_id[i].get("created") or 0):  # submission order
        # test and val rows: the honest selection chooses its epoch on val (as Compare does)
        metrics = index.run_metrics(runs_dir, run_id, split=("test", "val"))
        test_epochs = sorted({m["epoch"] for m in metrics
                              if m["split"] == "test" and m.get("epoch") is not None})
        at = test_epochs[-1] if epoch == "last" and test_epochs else None
        row = compare.run_row(by_id[run_id], at, metrics, n_boot=0)
        rows.append(dict(row, **last_mean(metrics, LAST_N)) if epoch == "last10" else row)
    folded = compare.fold_group(rows)
    info = folded["group"]
    parsed = parse_label(info.get("protocol", ""))
    name, task = (parsed[0].name, parsed[1]) if parsed else (info.get("protocol") or "", "")
    return {"group_id": group_id, "protocol": name, "task": task,
            "label": group_label(parsed[0], task) if parsed else name,
            "method": folded.get("method"), "dataset": folded.get("dataset"),
            "aggregate": info.get("aggregate"), "epoch": epoch, "rho": folded.get("rho"),
            "rho_std": folded.get("rho_std"), "runs": folded["runs"], "note": folded.get("note"),
            # the same group under both of Compare's selection protocols (aqa.compare.SELECTIONS)
            "rho_official": folded.get("rho_official"), "rho_honest": folded.get("rho_honest"),
            "members": [{"member": r["group"].get("member"), "run_id": r["run_id"],
                         "status": r.get("status"), "epoch": r.get("epoch"), "rho": r.get("rho"),
                         "l2": r.get("l2"), "rl2x100": r.get("rl2x100"),
                         "rho_official": r.get("rho_official"), "rho_honest": r.get("rho_honest")}
                        for r in rows]}


def tasks_summary(results: list[dict]) -> dict | None:
    """The across-task number of JIGSAWS groups of one protocol and method, one a task (the
    papers' "Avg."): ``{"label", "per_task", "rho"}``; None when ``results`` are not that."""
    if len(results) < 2:
        return None
    keys = {(r["protocol"], r["method"]) for r in results}
    tasks = [r["task"] for r in results]
    if len(keys) != 1 or not all(tasks) or len(set(tasks)) != len(tasks):
        return None
    name, method = keys.pop()
    per_task = {r["task"]: r["rho"] for r in results}
    return {"label": f"{name} across {len(tasks)} tasks (Fisher-z mean of the tasks' rho)",
            "protocol": name, "method": method, "per_task": per_task, "rho": across_tasks(per_task)}
