"""Runs as flat records: config columns, a small filter language, and config diffs.

A run's **record** (``record(row, best)``) is one flat dict: every key of its resolved config
flattened with dots (``optim.lr``, ``train.batch_size``, ``model.backbone``), the index row's
fields (``id``, ``name``, ``method``, ``dataset``, ``status``, ``tags``, ``note``,
``archived``, ``epoch``, ``epochs``, ``best_rho``, ...) and its best test value of each metric
under the metric's bare name (``rho``, ``l2``, ``rl2``, ``accuracy``: the largest, or the
smallest for l2 and rl2; ``rho`` is the runs table's "best ρ").

**Filters** (``parse(text)`` -> a node, ``matches(node, record)``), parsed here by hand (the
user's text is never evaluated as Python)::

    expr        := or
    or          := and ("or" and)*
    and         := not ("and" not)*
    not         := "not" not | "(" expr ")" | comparison
    comparison  := FIELD OP VALUE       OP: < <= > >= == !=, or the word "contains"
    VALUE       := number (1e-3, -2, 0.5) | "quoted" | 'quoted' | bare word (core, true)

``not`` binds tighter than ``and``, which binds tighter than ``or``; the words are
case-insensitive. A number compares numerically with a numeric field; a word or a quoted string
compares as text (``true``/``false`` match booleans, ``none`` a null). ``contains`` is membership
in a list (``tags contains fav``) or a substring of text (``note contains lr``). A run without
the field never satisfies a comparison (``!=`` included), so ``not (x == 1)`` is how to keep
runs lacking ``x``. A bad expression raises ``QueryError`` naming the position and what was
expected.

**Columns** (``expand_columns(patterns, keys)``): names or shell-style patterns (``model.*``)
over the keys the records have.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Union

from aqa.errors import AQAError

OPS = ("<=", ">=", "==", "!=", "<", ">")
WORDS = ("and", "or", "not", "contains")
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.*-]))
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<op><=|>=|==|!=|<|>)
  | (?P<paren>[()])
  | (?P<word>[A-Za-z_][\w.\-/*:]*|[\w.\-/:]+)
  | (?P<bad>.)
""", re.VERBOSE)


class QueryError(AQAError):
    """A filter expression that does not parse; says where and what was expected."""


@dataclass(frozen=True)
class Compare:
    field: str
    op: str       # one of OPS, or "contains"
    value: Any    # float for a number literal, str otherwise
    text: bool    # the literal was a word or a quoted string (compare as text)


@dataclass(frozen=True)
class Not:
    arg: "Node"


@dataclass(frozen=True)
class BoolOp:
    op: str       # "and" | "or"
    args: tuple


Node = Union[Compare, Not, BoolOp]


def tokenize(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) tokens; kinds: number, string, op, paren, word, keyword."""
    out = []
    for m in _TOKEN.finditer(text):
        kind, value = m.lastgroup, m.group()
        if kind == "space":
            continue
        if kind == "bad":
            hint = " (use == to compare)" if value == "=" else ""
            raise QueryError(f"unexpected {value!r} at position {m.start() + 1} of the filter"
                             f"{hint}")
        if kind == "word" and value.lower() in WORDS:
            kind, value = "keyword", value.lower()
        out.append((kind, value, m.start() + 1))
    return out


class _Parser:
    def __init__(self, text: str):
        self.text, self.tokens, self.i = text, tokenize(text), 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def fail(self, expected: str) -> QueryError:
        tok = self.peek()
        where = f"{tok[1]!r} at position {tok[2]}" if tok else "the end"
        return QueryError(f"bad filter {self.text!r}: expected {expected}, found {where}. "
                          "Example: optim.lr<1e-3 and rho>0.9, method==core, tags contains fav")

    def take(self, kind: str, value: str | None = None) -> bool:
        tok = self.peek()
        if tok and tok[0] == kind and (value is None or tok[1] == value):
            self.i += 1
            return True
        return False

    def parse(self) -> Node:
        if not self.tokens:
            raise QueryError("the filter is empty")
        node = self.or_()
        if self.peek():
            raise self.fail("'and', 'or' or the end of the filter")
        return node

    def or_(self) -> Node:
        args = [self.and_()]
        while self.take("keyword", "or"):
            args.append(self.and_())
        return args[0] if len(args) == 1 else BoolOp("or", tuple(args))

    def and_(self) -> Node:
        args = [self.not_()]
        while self.take("keyword", "and"):
            args.append(self.not_())
        return args[0] if len(args) == 1 else BoolOp("and", tuple(args))

    def not_(self) -> Node:
        if self.take("keyword", "not"):
            return Not(self.not_())
        if self.take("paren", "("):
            node = self.or_()
            if not self.take("paren", ")"):
                raise self.fail("')'")
            return node
        return self.comparison()

    def comparison(self) -> Node:
        tok = self.peek()
        if not tok or tok[0] != "word":
            raise self.fail("a field name (such as optim.lr, rho, method, tags) or '('")
        self.i += 1
        field = tok[1]
        op = self.peek()
        if not op or not (op[0] == "op" or op[1] == "contains"):
            raise self.fail(f"a comparison after {field!r} (< <= > >= == != contains)")
        self.i += 1
        val = self.peek()
        if not val or val[0] not in ("number", "string", "word"):
            raise self.fail(f"a value after {field} {op[1]} (a number, a word or a quoted string)")
        self.i += 1
        if val[0] == "number":
            return Compare(field, op[1], float(val[1]), False)
        if val[0] == "string":
            return Compare(field, op[1], _unquote(val[1]), True)
        return Compare(field, op[1], val[1], True)


def _unquote(s: str) -> str:
    return re.sub(r"\\(.)", r"\1", s[1:-1])


def parse(text: str) -> Node:
    """The filter's tree; ``QueryError`` with the position and what was expected otherwise."""
    return _Parser(str(text)).parse()


def _number(v) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def as_text(v) -> str:
    """How a record value reads as text: booleans ``true``/``false``, null ``none``, lists JSON."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


_CMP = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b}


def _compare(node: Compare, record: dict) -> bool:
    if node.field not in record:
        return False
    v = record[node.field]
    if node.op == "contains":
        want = as_text(node.value) if not node.text else node.value
        if isinstance(v, (list, tuple)):
            return any(as_text(x) == want for x in v)
        return v is not None and want.lower() in as_text(v).lower()
    if not node.text:  # a number literal: numeric comparison, or no match
        x = _number(v)
        return x is not None and not math.isnan(x) and _CMP[node.op](x, node.value)
    if isinstance(v, list) or (v is None and node.value.lower() != "none"):
        return False
    literal = node.value.lower() if isinstance(v, bool) or v is None else node.value
    return _CMP[node.op](as_text(v), literal)


def matches(node: Node, record: dict) -> bool:
    if isinstance(node, Compare):
        return _compare(node, record)
    if isinstance(node, Not):
        return not matches(node.arg, record)
    if node.op == "and":
        return all(matches(a, record) for a in node.args)
    return any(matches(a, record) for a in node.args)


def fields(node: Node) -> set[str]:
    """The field names a filter reads."""
    if isinstance(node, Compare):
        return {node.field}
    if isinstance(node, Not):
        return fields(node.arg)
    return set().union(*(fields(a) for a in node.args))


# ---------------------------------------------------------------- records and columns

def flat_config(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1e-3}}`` -> ``{"optim.lr": 0.001}``; other values as they are (an empty
    section has no key)."""
    out: dict[str, Any] = {}
    for key, value in (config or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_config(value, f"{name}."))
        else:
            out[name] = value
    return out


RUN_FIELDS = ("id", "name", "method", "dataset", "status", "tags", "note", "archived", "epoch",
              "epochs", "step", "best_metric", "best_value", "best_epoch", "best_rho", "params",
              "attempts", "executor", "created", "started", "ended")


@functools.lru_cache(maxsize=4096)
def _flat_config_text(text: str) -> dict[str, Any]:
    """``flat_config`` of a config's JSON text, kept per text: a page lists every run's record on
    each script run, and the configs of a workspace repeat. ``record`` copies the dict; its
    values (a list such as ``model.clip_starts``) are shared: never change one in place."""
    try:
        cfg = json.loads(text)
    except (TypeError, ValueError):
        cfg = {}
    return flat_config(cfg if isinstance(cfg, dict) else {})


def record(row: dict, best: dict | None = None) -> dict:
    """One run as a flat dict: its config keys, its row's fields, its best test metrics."""
    text = row.get("config") or "{}"
    out = dict(_flat_config_text(text)) if isinstance(text, str) else {}
    out.update({k: row.get(k) for k in RUN_FIELDS if k in row})
    out.update(best or {})
    return out


def expand_columns(patterns: Iterable[str], keys: Iterable[str]) -> list[str]:
    """The columns ``patterns`` name, in order, without repeats: a name as given (even one no run
    has: its cells stay empty), a pattern with ``*``/``?``/``[`` as the matching keys, sorted."""
    keys = sorted(set(keys))
    out: list[str] = []
    for pat in patterns:
        pat = pat.strip()
        if not pat:
            continue
        found = fnmatch.filter(keys, pat) if any(c in pat for c in "*?[") else [pat]
        out.extend(k for k in found if k not in out)
    return out


def split_columns(text: str | None) -> list[str]:
    """``"optim.lr, model.*"`` -> ``["optim.lr", "model.*"]`` (a --columns or URL value)."""
    return [c.strip() for c in (text or "").split(",") if c.strip()]


class View(NamedTuple):
    rows: list[dict]      # the index rows that match, in their order
    records: list[dict]   # their records (``record``)
    columns: list[str]    # the chosen columns, patterns expanded over every run's keys


def view(rows: list[dict], best: dict[str, dict], where: str | None = None,
         columns: Iterable[str] = ()) -> View:
    """The runs of ``rows`` that match ``where`` (all when it is empty) and the chosen columns;
    ``best`` is ``aqa.runs.index.best_test_metrics`` of the rows. The filter is parsed before
    anything is read (``QueryError``)."""
    node = parse(where) if (where or "").strip() else None
    records = [record(r, best.get(r["id"])) for r in rows]
    cols = expand_columns(columns, set().union(*records) if records else ())
    keep = [i for i, rec in enumerate(records) if node is None or matches(node, rec)]
    return View([rows[i] for i in keep], [records[i] for i in keep], cols)


def config_diff(a: dict, b: dict) -> list[tuple[str, Any, Any]]:
    """(key, value in a, value in b) for every flat config key whose values differ, sorted by
    key; a key only one side has appears with ``MISSING`` on the other."""
    fa, fb = flat_config(a), flat_config(b)
    out = []
    for key in sorted(set(fa) | set(fb)):
        va, vb = fa.get(key, MISSING), fb.get(key, MISSING)
        if va != vb or isinstance(va, bool) != isinstance(vb, bool):
            out.append((key, va, vb))
    return out


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"

    __str__ = __repr__


MISSING = _Missing()
