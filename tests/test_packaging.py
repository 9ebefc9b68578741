"""The project as a Python package: pyproject.toml builds `aqa-studio`, whose metadata comes from
the requirements files, whose `aqa` command works outside the repository, and whose runtime
imports only what requirements.txt installs."""

from __future__ import annotations

import ast
import email
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import aqa

ROOT = Path(__file__).resolve().parents[1]


def _requirements(name: str) -> list[str]:
    lines = (ROOT / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _copy_source(dest: Path) -> Path:
    """The files a build reads, copied (a build in the worktree would leave build/ behind)."""
    src = dest / "src"
    shutil.copytree(ROOT / "aqa", src / "aqa", ignore=shutil.ignore_patterns("__pycache__"))
    for path in [ROOT / "pyproject.toml", ROOT / "README.md", *ROOT.glob("requirements*.txt")]:
        shutil.copy(path, src / path.name)
    return src


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """`pip install --target T .` of a copy of the repository: a real (non-editable) install."""
    tmp = tmp_path_factory.mktemp("pkg")
    src, target = _copy_source(tmp), tmp / "target"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--no-build-isolation", "--target", str(target), str(src)],
                   check=True, capture_output=True, text=True, timeout=300)
    return target


def _metadata(target: Path) -> email.message.Message:
    (dist,) = target.glob("aqa_studio-*.dist-info")
    return email.message_from_string((dist / "METADATA").read_text())


def test_metadata_name_version_and_dependencies_come_from_the_requirements_files(installed):
    meta = _metadata(installed)
    assert meta["Name"] == "aqa-studio"
    assert meta["Version"] == aqa.__version__
    requires = meta.get_all("Requires-Dist")
    assert [r for r in requires if "extra ==" not in r] == _requirements("requirements.txt")
    extras = {}
    for r in requires:
        if "extra ==" in r:
            req, extra = r.split(";")
            extras.setdefault(extra.split("==")[1].strip().strip('"'), []).append(req.strip())
    assert extras["app"] == _requirements("requirements-app.txt")
    assert extras["nvml"] == _requirements("requirements-nvml.txt")
    assert extras["dev"] == (_requirements("requirements-dev.txt") + _requirements("requirements-app.txt")
                             + _requirements("requirements-exports.txt"))
    assert extras.get("exports", []) == _requirements("requirements-exports.txt")
    assert "torchvision==0.29.2" in requires  # a runtime requirement, pinned with torch


def test_the_sdist_carries_the_requirements_files_its_metadata_reads(tmp_path):
    import tarfile

    src = _copy_source(tmp_path)
    out = subprocess.run([sys.executable, "-c", "from setuptools import build_meta; "
                          "print(build_meta.build_sdist('dist'))"], cwd=src, check=True,
                         capture_output=True, text=True, timeout=300).stdout.split()[-1]
    with tarfile.open(src / "dist" / out) as tar:
        names = {Path(n).name for n in tar.getnames() if n.count("/") == 1}
    assert {p.name for p in ROOT.glob("requirements*.txt")} <= names
    assert "app.py" not in names


def test_installed_package_imports_and_runs_outside_the_repository(installed, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(installed), "AQA_RUNS_DIR": str(tmp_path / "runs")}
    out = subprocess.run([sys.executable, "-c", "import aqa; print(aqa.__file__)"], cwd=tmp_path,
                         env=env, capture_output=True, text=True, check=True).stdout
    assert Path(out.strip()).is_relative_to(installed)
    script = installed / "bin" / "aqa"  # the console script: aqa = aqa.cli:main
    assert script.read_text().count("from aqa.cli import main") == 1
    res = subprocess.run([sys.executable, str(script), "methods"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "regression" in res.stdout and "synthetic" in res.stdout
    # the app is not in the wheel: `aqa app` says where it runs from, and exits 2
    res = subprocess.run([sys.executable, str(script), "app"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "runs from a clone" in res.stderr and 'pip install -e ".[app]"' in res.stderr
    assert not (installed / "app.py").exists() and not (installed / "ui").exists()


def test_aqa_app_command_runs_streamlit_on_the_checkouts_app_py(tmp_path):
    from aqa.cli.app import app_command

    cmd = app_command(8600)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and Path(cmd[4]) == ROOT / "app.py"
    assert cmd[-4:] == ["--server.address", "127.0.0.1", "--server.port", "8600"]


def test_aqa_app_gives_the_server_one_malloc_arena(tmp_path, monkeypatch):
    """The server scores in threads; one malloc arena lets them reuse freed memory
    (aqa.allocator.server_env), unless the user switched that off."""
    import argparse

    from aqa import allocator
    from aqa.cli import app

    seen = []
    monkeypatch.setattr(app.os, "execve", lambda path, argv, env: seen.append(env))
    monkeypatch.setattr(app.os, "chdir", lambda path: None)
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    monkeypatch.delenv("AQA_ALLOCATOR", raising=False)
    args = argparse.Namespace(port=8600, runs_dir=str(tmp_path))
    app.cmd_app(args)
    monkeypatch.setenv("AQA_ALLOCATOR", "system")
    app.cmd_app(args)
    on, off = seen
    assert on["AQA_RUNS_DIR"] == str(tmp_path.resolve())
    assert on.get("GLIBC_TUNABLES") == ("glibc.malloc.arena_max=1" if allocator._glibc() else None)
    assert "GLIBC_TUNABLES" not in off


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_every_package_the_runtime_imports_is_a_runtime_requirement():
    """torchvision is imported by the feature extractor (Swin3D, GDLT's frames), so it is a
    runtime requirement, not a test one; the same for every third-party import of the library."""
    runtime = [*ROOT.glob("aqa/**/*.py")]
    assert len(runtime) > 50
    imported = set().union(*(_imports(p) for p in runtime))
    required = {re.split(r"[=<>;\[ ]", r)[0].lower().replace("-", "_")
                for r in _requirements("requirements.txt")}
    import_names = {"yaml": "pyyaml", "av": "av", "sqlite_utils": "sqlite_utils"}
    third_party = {"torch", "torchvision", "numpy", "scipy", "pandas", "decord", "av", "yaml",
                   "sqlite_utils", "tqdm", "submitit", "xlrd"}
    for name in sorted(imported & third_party):
        assert import_names.get(name, name) in required, name
    assert "torchvision" in imported and "torchvision" not in _requirements("requirements-dev.txt")


@pytest.mark.slow
def test_aqa_app_serves_and_stops_with_one_signal(tmp_path):
    """`aqa app` becomes the streamlit server: it answers, and SIGTERM to it leaves no server."""
    import socket
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "aqa", "app", "--port", str(port),
                             "--runs-dir", str(tmp_path / "runs")], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline, health = time.time() + 60, None
        while time.time() < deadline and health is None:
            try:
                health = urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health",
                                                timeout=2).read()
            except OSError:
                time.sleep(0.5)
        assert health == b"ok"
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
