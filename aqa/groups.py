"""Groups of runs: N runs of one config that differ in one thing only (the seed, the
cross-validation fold, the class), submitted together and compared as one row.

A group lives in its members' configs, section ``group`` (``aqa.config.GroupConfig``): the
group's id (``g-YYYYMMDD-HHMMSS-xxxx``), its kind (``seeds``, ``folds`` or ``classes``), a
protocol label (``seeds``, ``jigsaws-louo``, ``aqa7-per-class``, ...), the member this run is,
the group's size, and how Compare combines the members' rho (``mean``, or ``fisher_z``:
tanh of the mean of atanh). Nothing else records a group: the run directories (and the index,
which keeps each run's config) are the truth, and ``aqa.compare.group_rows`` folds the members'
comparison rows into one row.

``submit_group`` submits the members through ``aqa.jobs.submit``, the path of ``aqa train``:
same queue, same executors. ``seed_members`` gives the members of ``aqa train --seeds N``:
seeds ``train.seed + 0 .. N-1``.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import replace
from pathlib import Path

from aqa.config import build_run_config
from aqa.errors import ConfigError
from aqa.jobs import SubmitRequest, submit
from aqa.runs import store

KINDS = ("seeds", "folds", "classes")
AGGREGATES = ("mean", "fisher_z")


def new_group_id(now: float | None = None) -> str:
    """A fresh group id, ``g-YYYYMMDD-HHMMSS-<4 hex>`` (UTC)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"g-{stamp}-{secrets.token_hex(2)}"


def seed_members(base_seed: int, n: int) -> list[tuple[str, list[str]]]:
    """The members of a seeds group: seeds ``base_seed``, ``base_seed + 1``, ... (n of them)."""
    if n < 1:
        raise ConfigError(f"--seeds {n}: a group needs at least 1 run (e.g. --seeds 5)")
    return [(str(base_seed + i), [f"train.seed={base_seed + i}"]) for i in range(n)]


def submit_group(runs_dir: str | os.PathLike, request: SubmitRequest,
                 members: list[tuple[str, list[str]]], *, kind: str, protocol: str,
                 aggregate: str = "mean") -> tuple[str, list[str]]:
    """Submit one run per member; returns ``(group_id, run_ids)`` in the members' order.

    ``request``   the run every member starts from (``aqa.jobs.SubmitRequest``: method, dataset,
                  overrides, values, GPUs, executor...), as ``aqa train`` would submit it alone.
    ``members``   ``[(label, overrides), ...]``: the member's label (its seed, fold or class,
                  stored as ``group.member``) and the ``key=value`` overrides that make it
                  differ, applied after the request's own (e.g. ``("2", ["train.seed=2"])``).
    ``kind``      ``seeds``, ``folds`` or ``classes``.
    ``protocol``  a short label of the group's protocol, shown by Compare (``seeds``,
                  ``jigsaws-louo``, ``aqa7-per-class``).
    ``aggregate`` ``mean`` or ``fisher_z``: how Compare combines the members' rho.

    Every member's config is checked before any run is created, so a bad override submits
    nothing. Each run also gets ``group.id/kind/protocol/member/size/aggregate``. A request with
    a ``submission_id`` (a form sent twice) gives member i the id ``<submission_id>:<i>``, so a
    repeated submit returns the first group's runs and id instead of starting copies.
    """
    if kind not in KINDS:
        raise ConfigError(f"group kind {kind!r}: choose one of {', '.join(KINDS)}")
    if aggregate not in AGGREGATES:
        raise ConfigError(f"group aggregate {aggregate!r}: choose one of {', '.join(AGGREGATES)}")
    if not members:
        raise ConfigError("a group needs at least one member")
    labels = [label for label, _ in members]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"group members must have distinct labels, got {labels}")
    group_id = new_group_id()
    requests = []
    for i, (label, extra) in enumerate(members):
        tags = [f"group.id={group_id}", f"group.kind={kind}", f"group.protocol={protocol}",
                f"group.member={label}", f"group.size={len(members)}",
                f"group.aggregate={aggregate}"]
        overrides = list(request.overrides or []) + list(extra) + tags
        build_run_config(request.method, request.dataset, overrides=overrides,
                         values=request.values)  # refuse a bad member before writing anything
        sid = f"{request.submission_id}:{i}" if request.submission_id else None
        requests.append(replace(request, overrides=overrides, submission_id=sid))
    paths = [Path(submit(runs_dir, r)) for r in requests]
    # a repeated submission returns the runs of the first one: report that group's id
    group_id = store.read_run(paths[0])["config"]["group"]["id"] or group_id
    return group_id, [p.name for p in paths]
