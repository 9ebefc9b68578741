"""AppTest: the Compare page's group row, its members and the reproducibility ledger; the Launch
page's seeds input submitting a group (the queue's start replaced by a recorder: nothing trains)."""

from __future__ import annotations

import numpy as np

from aqa.runs import store
from test_app import app, no_exception
from test_groups import no_start, seed_group  # noqa: F401  (a fixture)

GID = "g-20261206-120000-abcd"


def test_compare_shows_a_group_as_one_row_with_its_members_and_the_ledger(runs_dir):
    seed_group(runs_dir, [0.6, 0.8], unfinished=1, gid=GID)
    at = app("compare")
    no_exception(at)
    assert at.multiselect(key="cmp_groups").value == [GID]
    assert at.multiselect(key="cmp_runs").value == []  # the members are in the group's row
    table = at.dataframe[0].value
    row = table[table["run / reference"].str.startswith(f"group {GID}")].iloc[0]
    assert row["runs (finished / group)"] == "2/3"
    assert row["ρ"] == f"0.7000 ± {np.std([0.6, 0.8], ddof=1):.4f}"
    assert row["ρ official (best on test)"].startswith("0.7000 ± ")
    members = at.dataframe[1].value  # inside the expander, before the ledger
    assert len(members) == 3 and members["ρ"].tolist() == ["0.6000", "0.8000", "0.1000"]
    assert members["run / reference"].iloc[0].startswith("member 0 (finished): ")
    assert f"Member runs of {GID} (2/3 finished)" in [e.label for e in at.expander]
    ledger = at.dataframe[-1].value
    gaps = ledger[ledger["provenance"] == "public issue"]
    assert "public issue: TPT" in gaps["run / reference"].tolist()
    assert "0.9581" in gaps["reproduced ρ"].tolist()
    ours = ledger[ledger["run / reference"].str.startswith(f"group {GID}")].iloc[0]
    assert ours["ρ honest (held-out / last)"].startswith("0.7000 ± ")
    assert "best epoch on test (papers' protocol)" in ours["protocol"]
    at.selectbox(key="cmp_ledger").set_value("FineDiving (test split, 749 dives)").run()
    no_exception(at)
    fd = at.dataframe[-1].value
    assert "0.9043" in fd[fd["provenance"] == "public issue"]["reproduced ρ"].tolist()


def test_launch_with_seeds_submits_a_group(runs_dir, no_start):  # noqa: F811
    at = app("launch")
    at.number_input(key="seeds").set_value(3)
    at.button(key="FormSubmitter:launch_form-Launch").click().run()
    no_exception(at)
    assert not at.error, [e.value for e in at.error]
    runs = sorted(p for p in runs_dir.iterdir() if (p / "run.json").exists())
    configs = [store.read_run(p)["config"] for p in runs]
    assert len(no_start) == 3
    assert sorted(c["train"]["seed"] for c in configs) == [0, 1, 2]
    assert len({c["group"]["id"] for c in configs}) == 1
    assert {c["group"]["kind"] for c in configs} == {"seeds"}
    # st.switch_page to Compare with the group chosen (AppTest records the query, stays put)
    assert at.query_params["group"] == configs[0]["group"]["id"]
