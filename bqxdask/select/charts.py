"""Stage 3 chart: the 20 most important feature clusters per target, one Bokeh page (SPEC §9).

Self-contained (``bokeh.resources.INLINE``: opens offline); one tab per target; horizontal
bars of the importance with ± 1 std over folds as whiskers, significant clusters in a darker
colour; a cluster is labelled by its first feature and the number of others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

TOP_N = 20


def chart_html(pair: str, targets: Sequence[Any], metrics: Mapping[str, Any]) -> str:
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import ColumnDataSource, Div, TabPanel, Tabs, Whisker
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    panels = []
    for t in targets:
        frame = t.ranking
        sizes = frame.groupby("cluster")["feature"].size()
        top = frame.drop_duplicates("cluster").head(TOP_N).iloc[::-1]  # most important at the top
        labels = [
            f"{r.feature}" + (f" (+{sizes[r.cluster] - 1})" if sizes[r.cluster] > 1 else "") for r in top.itertuples()
        ]
        src = ColumnDataSource(
            {
                "label": labels,
                "importance": top["importance"].to_numpy(),
                "lower": (top["importance"] - top["importance_std"]).to_numpy(),
                "upper": (top["importance"] + top["importance_std"]).to_numpy(),
                "p": top["p_value"].to_numpy(),
                "rank": top["rank"].to_numpy(),
                "color": ["#1f4e79" if s else "#9db9d5" for s in top["significant"]],
            }
        )
        m = metrics["targets"][t.target.name]
        fig = figure(
            y_range=labels,
            height=90 + 24 * len(top),
            width=950,
            title=f"{pair} {t.target.name}: R² folds {_fmt(m['r2_folds_mean'])}, test "
            f"{_fmt(m['r2_test'])} (zero {_fmt(m['r2_test_zero'])}); "
            f"{m['significant_features']} significant features",
            tools="hover,save",
            tooltips=[
                ("feature", "@label"),
                ("rank", "@rank"),
                ("importance", "@importance{0.000000}"),
                ("p", "@p{0.0000}"),
            ],
            x_axis_label="drop in R² when the cluster is permuted (mean ± std over folds); dark = significant",
        )
        fig.hbar(y="label", right="importance", height=0.7, source=src, color="color")
        fig.add_layout(Whisker(source=src, base="label", lower="lower", upper="upper", dimension="width"))
        fig.title.text_font_size = "11pt"
        panels.append(TabPanel(child=fig, title=t.target.name))
    verdicts = "".join(f"<li>{t.verdict}</li>" for t in targets)
    head = Div(
        text=f"<h2>bqxdask select — {pair}, {metrics['months']['start']}..{metrics['months']['end']}</h2>"
        f"<p>{metrics['model_feature_count']} features in {metrics['clusters']} clusters, "
        f"{len(metrics['layout']['folds'])} walk-forward folds, gap {metrics['layout']['gap_rows']} rows, "
        f"seed {metrics['seed']}.</p><ul>{verdicts}</ul>"
    )
    return file_html(column(head, Tabs(tabs=panels)), resources=INLINE, title=f"bqxdask select {pair}")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"
