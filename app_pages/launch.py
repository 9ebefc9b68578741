"""Launch: method, dataset (with the doctor's verdict), backbone, hyperparameters, GPUs -> a run."""

import streamlit as st

from aqa import jobs
from aqa.config import build_run_config, to_dict
from aqa.errors import AQAError
from aqa.groups import seed_members, submit_group
from aqa.jobs.gpus import probe_gpus
from aqa.registry import BACKBONES, DATASETS, METHODS
from aqa.runs import store
from ui import common, data, forms, memory
from ui import jobs as ui_jobs

st.title("Launch a run")
runs_dir = common.runs_dir()

# "Duplicate with changes": ?from=<run id> fills the form with that run's config.
source, prefill = st.query_params.get("from"), {}
if source:
    try:
        spec = store.read_run(store.run_dir(runs_dir, source))
        prefill = forms.flatten_config(spec["config"])
        st.info(f"Duplicating run {source}: change what you need and launch.")
    except AQAError as exc:
        common.show_error(exc)


def _index(options: list[str], value: str | None, fallback: int = 0) -> int:
    return options.index(value) if value in options else fallback


methods, datasets, backbones = METHODS.names(), DATASETS.names(), BACKBONES.names()
c = st.columns(3)
method = c[0].selectbox("Method", methods, index=_index(methods, prefill.get("method")),
                        format_func=lambda m: f"{m} — {METHODS.get(m).description}", key="method")
dataset = c[1].selectbox("Dataset", datasets, index=_index(datasets, prefill.get("dataset"),
                                                           _index(datasets, "synthetic")),
                         format_func=lambda d: f"{d} — {DATASETS.get(d).description}",
                         key="dataset")
backbone = c[2].selectbox("Backbone", backbones,
                          index=_index(backbones, prefill.get("backbone.name")
                                       or METHODS.get(method).default_backbone),
                          key=f"backbone:{method}",  # a new method starts at its default backbone
                          help="the backbone weights are set in its tab below")
root = st.text_input("Data root", value=prefill.get("data.root", ""), key="data_root",
                     placeholder="empty = the dataset's default location",
                     help="the folder holding the dataset (clips and annotations)")
data.verdict(data.quick_check(dataset, root, str(runs_dir)), will_prepare=dataset == "synthetic")

gpus = probe_gpus()
if gpus:
    labels = {g["index"]: f"GPU {g['index']} · {g['name']} · {g['free_mb'] / 1024:.1f} GiB free "
                          f"of {g['total_mb'] / 1024:.1f} GiB · {g['util']:.0f}% busy" for g in gpus}
    chosen = st.multiselect("GPUs (none = CPU)", list(labels), format_func=labels.get, key="gpus")
    gpu_arg = ",".join(str(i) for i in chosen) or None
else:
    st.radio("Device", ["CPU (this machine reports no GPU)"], key="device")
    gpu_arg = None

executor, slurm = "local", None
if jobs.slurm_available():  # sbatch on the PATH: offer the cluster
    executor = st.radio("Executor", ["local", "slurm"], horizontal=True, key="executor",
                        help="slurm submits the run to the cluster through submitit; its run "
                             "directory must be on the shared filesystem")
    if executor == "slurm":
        defaults = ui_jobs.slurm_defaults(runs_dir)
        s = st.columns(5)
        slurm = {"partition": s[0].text_input("partition", defaults.get("partition") or "",
                                              key="sl_partition") or None,
                 "time": s[1].text_input("time", defaults.get("time") or "2:00:00", key="sl_time"),
                 "account": s[2].text_input("account", defaults.get("account") or "",
                                            key="sl_account") or None,
                 "gpus_per_node": int(s[3].number_input("GPUs per node", 0, 16,
                                                        int(defaults.get("gpus_per_node") or 0),
                                                        key="sl_gpus")),
                 "nodes": int(s[4].number_input("nodes", 1, 64, int(defaults.get("nodes") or 1),
                                                key="sl_nodes"))}

try:
    base = build_run_config(method, dataset, overrides=[f"backbone.name={backbone}"])
except AQAError as exc:
    common.show_error(exc)
    st.stop()

token = ui_jobs.form_token("launch")
with st.form("launch_form"):
    st.subheader("Hyperparameters")
    st.caption("Defaults are the method's paper settings; hover the ? next to a field for what it does.")
    group_keys = {f"group.{k}" for k in to_dict(base)["group"]}  # set by the seeds input below
    overrides = forms.config_form(base, prefill, skip={"data.root", "backbone.name", *group_keys},
                                  key_prefix=f"{method}:{dataset}:{backbone}:{source}")
    seeds = int(st.number_input(
        "Seeds", min_value=1, max_value=100, value=1, step=1, key="seeds",
        help="1: one run. N: a group of N runs that differ only in train.seed (train.seed, "
             "train.seed + 1, ..., train.seed + N - 1), queued like any runs; Compare shows "
             "the group as one row, mean ± std"))
    problem = st.empty()
    b = st.columns([1, 1, 4])
    submitted = b[0].form_submit_button("Launch", icon=":material/rocket_launch:", type="primary")
    estimated = b[1].form_submit_button("Estimate memory", icon=":material/memory:",
                                        help="a short dry run of this config (random weights) "
                                             "on the device the run would use: peak memory and "
                                             "step time with and without each memory option")

if estimated:
    memory.estimate(method, dataset, [f"backbone.name={backbone}"] + overrides, gpu_arg, gpus)
memory.panel()  # the estimate's progress, then its plan (it runs in the background)

if submitted:
    overrides = [f"backbone.name={backbone}"] + overrides
    request = jobs.SubmitRequest(method, dataset, data_root=root or None, overrides=overrides,
                                 gpus=gpu_arg, argv=["app", "launch"], submission_id=token,
                                 executor=executor, slurm=slurm)
    try:
        cfg = build_run_config(method, dataset, overrides=overrides)  # refuse bad values with the reason
        if seeds > 1:
            group_id, _ = submit_group(runs_dir, request, seed_members(cfg.train.seed, seeds),
                                       kind="seeds", protocol="seeds", aggregate="mean")
        else:
            path = jobs.submit(runs_dir, request)
    except AQAError as exc:
        problem.error(f"Not launched: {exc}", icon=":material/error:")
    else:
        ui_jobs.new_token("launch")
        if seeds > 1:
            st.switch_page(common.PAGES["compare"], query_params={"group": group_id})
        common.open_run(path.name)
