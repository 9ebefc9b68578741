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
from aqa.errors import ConfigError

AGGREGATES = ("mean", "fisher_z")


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
    """The JIGSAWS tasks a request names (``suturing``, ``Needle-Passing``, ``all``, a comma
    list), in the dataset's spelling; ``[""]`` for a protocol without tasks."""
    from aqa.data.jigsaws import TASKS

    if protocol.dataset != "jigsaws":
        if task:
            raise ConfigError(f"protocol {protocol.name} has no tasks; drop --task")
        return [""]
    if not task:
        raise ConfigError(f"protocol {protocol.name} runs on one JIGSAWS task: give --task "
                          f"{', '.join(TASKS)} or all")
    by_key = {t.lower(): t for t in TASKS}
    if task.strip().lower() == "all":
        return list(TASKS)
    out = []
    for part in task.split(","):
        key = part.strip().lower().replace("-", "_").replace(" ", "_")
        if key not in by_key:
            raise ConfigError(f"--task {part.strip()!r}: not a JIGSAWS task; choose "
                              f"{', '.join(TASKS)} or all")
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
    of Needle_Passing) is not a member."""
    if protocol.dataset == "jigsaws":
        from aqa.data.jigsaws import folds_of

        cfg = replace(data_cfg, task=task, scheme=protocol.scheme, fold=0)
        return [Member(label, (f"data.task={task}", f"data.scheme={protocol.scheme}",
                               f"data.fold={k}"))
                for k, label, _ in folds_of(cfg)]
    from aqa.data.aqa7 import CLASSES

    return [Member(name, (f"data.class_name={name}",)) for name in CLASSES]


def aggregate(values, how: str) -> float | None:
    """The members' numbers as one: their mean, or the Fisher-z mean (tanh of the mean
    arctanh) for correlations; None when a member has no number yet."""
    if how not in AGGREGATES:
        raise ConfigError(f"unknown aggregate {how!r}; choose one of {', '.join(AGGREGATES)}")
    values = list(values)
    if not values or any(v is None for v in values):
        return None
    if how == "fisher_z":
        return M.fisher_z_mean(values)
    return float(sum(values) / len(values))


def across_tasks(per_task: dict[str, float]) -> float | None:
    """JIGSAWS' "Avg." over tasks: the Fisher-z mean of the tasks' numbers."""
    return aggregate(per_task.values(), "fisher_z")


def group_name(protocol: Protocol, method: str, task: str = "") -> str:
    """The label a protocol group shows: ``jigsaws-louo Suturing musdl``."""
    return " ".join(p for p in (protocol.name, task, method) if p)


def resolve_data(protocol: Protocol, runs_dir: str | Path, method: str, data_root: str | None,
                 overrides: list[str], values: dict | None = None):
    """The resolved data config a request gives (its errors are the submit's, raised first)."""
    from aqa.config import build_run_config
    from aqa.registry import DATASETS

    extra = [f"data.root={data_root}"] if data_root else []
    cfg = build_run_config(method, protocol.dataset, overrides=list(overrides) + extra,
                           values=values)
    return DATASETS.get(protocol.dataset).resolve(cfg.data, Path(runs_dir))
