"""The `where` expressions of slice definitions, parsed and evaluated without `eval`.

A slice is often defined by a filter (``region in ['DE', 'FR'] and age >= 30``). Config
files are shared and reviewed less carefully than code, so the expression is parsed with
`ast` and only a small grammar is accepted: column names, constants, lists of constants,
comparisons (``== != < <= > >= in not in``), ``and``, ``or``, ``not``. Anything else (calls,
attributes, subscripts, arithmetic, lambdas) is refused when the config is loaded. The
expression is then evaluated by walking that tree over pandas columns: Python never runs it.
Column names that are not identifiers go in backticks: ```age group` == 'young'``.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

_BACKTICK = re.compile(r"`([^`]+)`")
_COMPARE = (ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn)
_GRAMMAR = "use column op value, column in [...], and / or / not"


class WhereError(ValueError):
    """A `where` expression outside the accepted grammar, or one the data cannot answer."""


@dataclass(frozen=True)
class Where:
    """A validated expression: its text, its tree and the columns it reads."""

    text: str
    tree: ast.Expression
    names: dict[str, str]  # identifier in the tree -> column name in the data

    @property
    def columns(self) -> list[str]:
        return sorted(set(self.names.values()))

    def mask(self, frame: pd.DataFrame) -> Any:
        """A boolean numpy mask of the rows the expression selects."""
        import numpy as np

        missing = [c for c in self.columns if c not in frame.columns]
        if missing:
            raise WhereError(f"unknown column {missing[0]!r}")
        value = _Evaluator(frame, self.names).visit(self.tree.body)
        if np.isscalar(value):
            raise WhereError("the expression does not depend on any column")
        arr = np.asarray(value)
        if arr.dtype != bool:
            raise WhereError("the expression does not give true/false per row "
                             "(compare the column with a value)")
        return arr


def parse_where(text: str) -> Where:
    """Parse and validate `text`; `WhereError` (one line) when it is not allowed."""
    if not isinstance(text, str) or not text.strip():
        raise WhereError("empty expression")
    names: dict[str, str] = {}

    def name_for(match: re.Match[str]) -> str:
        ident = f"__col{len(names)}"
        names[ident] = match.group(1)
        return ident

    source = _BACKTICK.sub(name_for, text.strip())
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as err:
        raise WhereError(f"not a valid expression ({err.msg})") from None
    for node in ast.walk(tree):
        _check_node(node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in names:
            names[node.id] = node.id
    if not any(isinstance(n, ast.Name) for n in ast.walk(tree)):
        raise WhereError("the expression names no column")
    return Where(text=text, tree=tree, names=names)


def _check_node(node: ast.AST) -> None:
    allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
               ast.Compare, *_COMPARE, ast.Name, ast.Load, ast.Constant, ast.List, ast.Tuple)
    if not isinstance(node, allowed):
        what = {ast.Call: "calling a function", ast.Attribute: "attribute access",
                ast.Subscript: "subscripting", ast.BinOp: "arithmetic",
                ast.Lambda: "a lambda"}.get(type(node), f"a {type(node).__name__} node")
        raise WhereError(f"{what} is not allowed; {_GRAMMAR}")
    if isinstance(node, ast.Name) and node.id.startswith("__") and \
            not re.fullmatch(r"__col\d+", node.id):
        raise WhereError(f"name {node.id!r} is not allowed; {_GRAMMAR}")
    if isinstance(node, ast.Constant) and not isinstance(node.value,
                                                         str | int | float | bool | type(None)):
        raise WhereError(f"constant {node.value!r} is not allowed")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and \
            not isinstance(node.operand, ast.Constant):
        raise WhereError(f"only numbers can be negated; {_GRAMMAR}")
    if isinstance(node, ast.List | ast.Tuple) and \
            not all(_is_constant(e) for e in node.elts):
        raise WhereError("lists may hold only constants")
    if isinstance(node, ast.Compare):
        for op, right in zip(node.ops, node.comparators, strict=True):
            if isinstance(op, ast.In | ast.NotIn) and not isinstance(right, ast.List | ast.Tuple):
                raise WhereError("`in` needs a list on its right: column in ['a', 'b']")


def _is_constant(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return True
    return isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and \
        isinstance(node.operand, ast.Constant)


class _Evaluator:
    """Walks a validated tree: pandas Series for columns, Python values for constants."""

    def __init__(self, frame: pd.DataFrame, names: dict[str, str]) -> None:
        self.frame = frame
        self.names = names

    def visit(self, node: ast.AST) -> Any:
        if isinstance(node, ast.BoolOp):
            parts = [self._bool(self.visit(v)) for v in node.values]
            out = parts[0]
            for part in parts[1:]:
                out = (out & part) if isinstance(node.op, ast.And) else (out | part)
            return out
        if isinstance(node, ast.UnaryOp):
            value = self.visit(node.operand)
            return ~self._bool(value) if isinstance(node.op, ast.Not) else -value
        if isinstance(node, ast.Compare):
            left = self.visit(node.left)
            out = None
            for op, right_node in zip(node.ops, node.comparators, strict=True):
                right = self.visit(right_node)
                part = self._bool(self._compare(left, op, right))
                out = part if out is None else (out & part)
                left = right
            return out
        if isinstance(node, ast.Name):
            return self.frame[self.names[node.id]].reset_index(drop=True)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.List | ast.Tuple):
            return [self.visit(e) for e in node.elts]
        raise WhereError(f"{type(node).__name__} is not allowed")  # validated away; defensive

    @staticmethod
    def _bool(value: Any) -> Any:
        import numpy as np
        import pandas as pd

        if isinstance(value, pd.Series):
            if not pd.api.types.is_bool_dtype(value.dtype):
                raise WhereError(f"column {value.name!r} is not true/false: compare it with a "
                                 "value")
            return value.fillna(False).to_numpy(dtype=bool)
        return np.asarray(value, dtype=bool) if not np.isscalar(value) else bool(value)

    @staticmethod
    def _compare(left: Any, op: ast.cmpop, right: Any) -> Any:
        import pandas as pd

        if isinstance(op, ast.In | ast.NotIn):
            if not isinstance(left, pd.Series):
                raise WhereError("the left side of `in` must be a column")
            hit = left.isin(right)
            return ~hit if isinstance(op, ast.NotIn) else hit
        try:
            if isinstance(op, ast.Eq):
                return left == right
            if isinstance(op, ast.NotEq):
                return left != right
            if isinstance(op, ast.Lt):
                return left < right
            if isinstance(op, ast.LtE):
                return left <= right
            if isinstance(op, ast.Gt):
                return left > right
            return left >= right
        except TypeError as err:
            what = left.name if isinstance(left, pd.Series) else left
            raise WhereError(f"cannot compare {what!r} with {right!r}: "
                             f"{str(err).splitlines()[0]}") from None
