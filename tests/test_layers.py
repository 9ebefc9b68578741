"""The import layers of ``aqa`` (docs/layout.md): every import of every module under aqa/, the ones
inside functions included, read with ``ast`` (nothing is imported). Imports only point down the
layers, never make a cycle, never reach another module's private names, and never reach
streamlit. What does not hold yet is listed below by name, so any new violation fails."""

import ast
from pathlib import Path

import pytest

AQA = Path(__file__).resolve().parents[1] / "aqa"

# Bottom first. A module may import modules of its own layer (without a cycle) and of the
# layers below it. A module is placed by its longest listed prefix (aqa.runs.index -> aqa.runs;
# "aqa" is only the package's own __init__).
LAYERS = [
    ("base", ["aqa", "aqa.errors", "aqa.log", "aqa.allocator", "aqa.safe_pickle", "aqa.metrics", "aqa.plotting", "aqa.registry",
              "aqa.papers"]),
    ("config and video", ["aqa.config", "aqa.config_files", "aqa.official_config", "aqa.video_common", "aqa.video",
                          "aqa.video_pyav", "aqa.video_sws"]),
    ("data", ["aqa.data"]),
    ("runs", ["aqa.runs", "aqa.train.checkpoint"]),  # the checkpoint file format: no torch model
    ("models", ["aqa.models"]),  # with official_files: reading/writing official checkpoints
    ("learning", ["aqa.train", "aqa.evaluate", "aqa.scoring", "aqa.sport", "aqa.importers", "aqa.official",
                  "aqa.compare", "aqa.exports", "aqa.features"]),  # features: recipes, backbones, the extraction run
    ("jobs", ["aqa.jobs", "aqa.plan", "aqa.history", "aqa.features.submit", "aqa.groups",  # submit: queues the run
              "aqa.protocols"]),  # protocols: a protocol's runs submitted as a group
    ("cli", ["aqa.cli", "aqa.cli_data", "aqa.cli_history", "aqa.cli_jobs", "aqa.cli_pretrain",
             "aqa.__main__"]),
]

# Never, whatever the table says (named in issue 13).
FORBIDDEN = [("aqa.runs", "aqa.jobs"), ("aqa.models", "aqa.jobs"), ("aqa.data", "aqa.jobs"),
             ("aqa.data", "aqa.runs")]

# Violations that exist today, outside the runs/jobs layers; each entry is an import edge
# (importer, imported). Fix one, then delete its entry (test_allowlists_are_current says so).
KNOWN_UPWARD: set = set()
KNOWN_CYCLES: list = []
KNOWN_PRIVATE: set = set()


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(AQA.rglob("*.py")):
        parts = list(path.relative_to(AQA.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _owner(name: str) -> str | None:
    """The module ``name`` lives in (``aqa.jobs.submit`` the function -> ``aqa.jobs``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str, path: Path):
    """(imported module, private name or None, line) for every import in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    aliases = {}  # local name -> aqa module, to see `module._private`
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, None, node.lineno
                if a.name.startswith("aqa") and _owner(a.name):
                    aliases[a.asname or a.name.partition(".")[0]] = _owner(
                        a.name if a.asname else a.name.partition(".")[0])
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                pkg = module if path.name == "__init__.py" else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rpartition(".")[0]
                base = f"{pkg}.{base}" if base else pkg
            for a in node.names:
                full = f"{base}.{a.name}"
                if full in MODULES:
                    yield full, None, node.lineno
                    aliases[a.asname or a.name] = full
                else:
                    yield base, a.name if a.name.startswith("_") else None, node.lineno
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in aliases and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            yield aliases[node.value.id], node.attr, node.lineno


def _graph():
    edges, private, external = {}, set(), {}
    for module, path in MODULES.items():
        edges[module] = set()
        for name, priv, line in _imports(module, path):
            owner = _owner(name) if name.startswith("aqa") else None
            if owner is None:
                external.setdefault(name.partition(".")[0], []).append(f"{module}:{line}")
                continue
            if owner != module:
                edges[module].add(owner)
                if priv:
                    private.add((module, owner, priv))
    return edges, private, external


EDGES, PRIVATE, EXTERNAL = _graph()


def _placed(module: str) -> tuple[str, int]:
    """(the LAYERS prefix that places ``module``, its layer index)."""
    best, rank = "", None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            inside = module == p or (p != "aqa" and module.startswith(p + "."))
            if inside and len(p) > len(best):
                best, rank = p, i
    assert rank is not None, (f"{module} has no layer: add it to LAYERS in tests/test_layers.py "
                              "and to docs/layout.md")
    return best, rank


def _layer(module: str) -> int:
    return _placed(module)[1]


def _unit(module: str) -> str:
    return _placed(module)[0]


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _cycles(edges) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _upward():
    return {(a, b) for a, bs in EDGES.items() for b in bs if _layer(b) > _layer(a)}


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


def test_no_module_imports_streamlit():
    assert "streamlit" not in EXTERNAL, f"aqa never imports streamlit: {EXTERNAL['streamlit']}"


@pytest.mark.parametrize("importer, imported", FORBIDDEN, ids=lambda x: x)
def test_forbidden_imports(importer, imported):
    bad = sorted((a, b) for a, bs in EDGES.items() for b in bs
                 if _under(a, importer) and _under(b, imported))
    assert not bad, f"{importer} must not import {imported}: {bad}"


def test_imports_point_down_the_layers():
    new = sorted(_upward() - KNOWN_UPWARD)
    assert not new, "imports that run up the layers (docs/layout.md): " + ", ".join(
        f"{a} ({LAYERS[_layer(a)][0]}) -> {b} ({LAYERS[_layer(b)][0]})" for a, b in new)


def test_no_import_cycle():
    new = [sorted(c) for c in _cycles(EDGES) if not any(c <= k for k in KNOWN_CYCLES)]
    assert not new, f"import cycles: {new}"


def test_package_layers_have_no_cycle():
    """runs, jobs, data, models, train... (each LAYERS entry) as single nodes: no cycle between
    them once the known violations above are set aside."""
    known = set(KNOWN_UPWARD) | {(a, b) for c in KNOWN_CYCLES for a in c for b in c}
    edges = {}
    for a, bs in EDGES.items():
        for b in bs:
            if (a, b) not in known and _unit(a) != _unit(b):
                edges.setdefault(_unit(a), set()).add(_unit(b))
    cycles = [sorted(c) for c in _cycles(edges)]
    assert not cycles, f"cycles between aqa's packages: {cycles}"


def test_no_private_names_cross_modules():
    new = sorted(PRIVATE - KNOWN_PRIVATE)
    assert not new, "private names used from another module (make them public, or move the " \
                    f"code): {new}"


def test_runs_and_jobs_have_no_known_violation():
    """The layers this issue untangled stay clean: no allowlist entry may name them."""
    named = {m for pair in KNOWN_UPWARD for m in pair} | {m for c in KNOWN_CYCLES for m in c} | \
        {m for a, b, _ in KNOWN_PRIVATE for m in (a, b)}
    assert not [m for m in named if _under(m, "aqa.runs") or _under(m, "aqa.jobs")]


def test_allowlists_are_current():
    """A fixed violation must leave the allowlist, so it cannot come back unnoticed."""
    upward, cycles = _upward(), _cycles(EDGES)
    stale = [f"KNOWN_UPWARD {p}" for p in sorted(KNOWN_UPWARD - upward)]
    stale += [f"KNOWN_CYCLES {sorted(k)}" for k in KNOWN_CYCLES if k not in cycles]
    stale += [f"KNOWN_PRIVATE {p}" for p in sorted(KNOWN_PRIVATE - PRIVATE)]
    assert not stale, "fixed, now delete from tests/test_layers.py: " + "; ".join(stale)
