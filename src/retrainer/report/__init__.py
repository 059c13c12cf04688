"""What a decision looks like to people: the record as Markdown, and the HTML report page.

- `markdown`: the record as Markdown (logged as decision.md) and the comparison tables the
  CLI prints;
- `charts`: small charts as inline SVG (no scripts, no network), shared with the drift page;
- `html`: the cycle report, one self-contained page per judgement, and the history page;
- `publish`: gathers what the page needs (history, drift), logs it, finds it again.

Only `markdown` is imported here: rendering a record must stay cheap to import.
"""

from retrainer.report.markdown import (
    SLICE_HEADER,
    comparison_tables,
    decision_head,
    differences_rows,
    fmt,
    slice_rows,
    to_markdown,
)

__all__ = ["SLICE_HEADER", "comparison_tables", "decision_head", "differences_rows", "fmt",
           "slice_rows", "to_markdown"]
