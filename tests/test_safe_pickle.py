import io
import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from aqa.errors import CheckpointError
from aqa.safe_pickle import safe_load


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_loads_a_dict_of_numpy_arrays(tmp_path):
    data = {"params": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
            "stats": OrderedDict(mean=np.zeros(2)), "n": np.float64(1.5), "tags": {1, 2}}
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps(data, protocol=4))
    out = safe_load(tmp_path / "ok.pkl")
    assert out["params"]["w"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert out["params"]["w"].dtype == np.float32
    assert isinstance(out["stats"], OrderedDict) and out["n"] == 1.5 and out["tags"] == {1, 2}


def test_refuses_os_system_without_running_it(tmp_path, capfd):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"x": _Exploit()}))  # names posix.system (os.system on Linux)
    with pytest.raises(CheckpointError) as err:
        safe_load(path)
    assert ".system" in str(err.value) and str(path) in str(err.value)
    assert "pwned" not in capfd.readouterr().out  # the shell never ran


def test_extra_allowed_and_file_objects():
    blob = pickle.dumps(np.dtype("float32").type)  # numpy.float32: not allowed by default
    with pytest.raises(CheckpointError, match="float32"):
        safe_load(io.BytesIO(blob))
    assert safe_load(io.BytesIO(blob), extra_allowed=[("numpy", "float32")]) is np.float32


def test_garbage_is_a_checkpoint_error(tmp_path):
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(CheckpointError, match="junk.pkl"):
        safe_load(tmp_path / "junk.pkl")


def test_protocol_2_pickles_of_numpy_data_load(tmp_path):
    """Python-2-era annotation files and torch.save use protocol 2, which spells bytes as
    _codecs.encode(text, 'latin1'); numpy arrays and scalars in them must load."""
    data = {(1, 2): {"final_score": np.float64(66.3), "judge_scores": np.arange(7.0)}}
    raw = pickle.dumps(data, protocol=2)
    assert b"_codecs\nencode" in raw
    (tmp_path / "p2.pkl").write_bytes(raw)
    out = safe_load(tmp_path / "p2.pkl")
    assert out[(1, 2)]["final_score"] == 66.3 and out[(1, 2)]["judge_scores"].tolist()[-1] == 6.0
