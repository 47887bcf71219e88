"""One pair-month as a static HTML page: ``bqxdask report --pair P --month YYYY-MM`` (SPEC §7).

For people who would rather look than read. The page is built from the Parquet outputs of a
finished ``bqxdask features`` run (never from the database) and has four panels on one shared,
linked time axis (pan or zoom one, the others follow):

1. the index ``idx = 100·close/B`` (``bqx.rate_index``) with the Bollinger band of 20 bars
   (``bollinger_rate``: middle ± 2σ) and, when ``reg_rate`` outputs exist, one rolling
   polynomial fit ``w{W}_pred`` (W = 60 if computed, else the window nearest to it);
2. RSI(14) with its 30/70 lines (``technical_rate``);
3. MACD 12/26/9: line, signal and histogram (``technical_rate``);
4. the BQX returns ``w{W}_bqx_return`` of every configured window (``bqx``).

The Bokeh JavaScript is inlined (:data:`bokeh.resources.INLINE`), so the page opens offline —
production machines often have no internet. A month of 1-minute bars is at most 44,640 rows;
above ``max_points`` rows the series are thinned to every k-th bar (k ≤ 3 for a month at the
default cap, invisible at screen resolution) and stored as float32, which keeps the page near
2 MB.

``bqx``, ``bollinger_rate`` and ``technical_rate`` are required; a missing one is a one-line
:class:`~bqxdask.errors.OutputError` naming it and the ``bqxdask features`` command that makes
it. ``reg_rate`` is optional: without it the page says so.
"""

from __future__ import annotations

import html
import math
import os
import posixpath
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .calendar import parse_month
from .config import Config, validate_pair
from .errors import OutputError
from .outputs import parquet

REQUIRED = ("bqx", "bollinger_rate", "technical_rate")
OPTIONAL = ("reg_rate",)
#: points per glyph above which the series are thinned
MAX_POINTS = 20_000
#: the regression window shown when it was computed (one hour of bars)
PREFERRED_REG_WINDOW = 60
BOLLINGER_N = 20

_TOOLS = "xpan,xwheel_zoom,box_zoom,reset,save"
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def default_output(pair: str, month: str) -> Path:
    return Path("reports") / f"{pair}-{month}.html"


def make_report(
    cfg: Config, pair: str, month: str, output: str | os.PathLike[str] | None = None, *, max_points: int = MAX_POINTS
) -> Path:
    """Write the report page of ``pair`` in ``month`` and return its path.

    Parameters
    ----------
    cfg
        The configuration; ``output.parquet_dir`` says where the features are.
    pair, month
        e.g. ``"eurusd"``, ``"2024-07"``.
    output
        Where to write the page; default ``reports/<pair>-<month>.html``.
    max_points
        Rows per series above which the series are thinned to every k-th bar.
    """
    validate_pair(pair, "--pair")
    parse_month(month, "--month")
    root = cfg.output.parquet_dir
    metas = {fam: parquet.unit_metadata(root, fam, pair, month) for fam in (*REQUIRED, *OPTIONAL)}
    missing = [f for f in REQUIRED if metas[f] is None]
    if missing:
        raise OutputError(_missing_message(root, pair, month, missing))
    frames = {fam: _read(root, fam, pair, month) for fam, meta in metas.items() if meta is not None}
    data = _assemble(frames)
    if data.empty:
        raise OutputError(
            f"the Parquet outputs of {pair} {month} under {root} have no rows; fix: bqxdask features "
            f"--pairs {pair} --start {month} --end {month} --full-refresh"
        )
    notes = []
    if "reg_rate" not in frames:
        notes.append(
            f"No reg_rate output for {pair} {month}: the regression overlay is left out "
            f"(make it with: bqxdask features --pairs {pair} --start {month} --end {month} "
            "--families reg_rate)."
        )
    layout = _layout(pair, month, data, metas, notes, max_points)
    path = Path(output) if output is not None else default_output(pair, month)
    _write_html(layout, path, title=f"bqxdask {pair.upper()} {month}")
    return path


# -- reading ----------------------------------------------------------------------------------
def _missing_message(root: str, pair: str, month: str, missing: list[str]) -> str:
    """One line: which family is missing for the pair-month, what exists instead, the fix."""
    months: set[str] = set()
    for fam in REQUIRED:
        try:
            months |= {m for _, m, _ in parquet.unit_files(root, fam, [pair], None, None)}
        except OutputError:  # no output of that family at all
            pass
    have = sorted(months)
    if not have:
        where = f" (none for {pair} in any month)"
    elif len(have) <= 4:
        where = f" ({pair} has outputs for {', '.join(have)})"
    else:
        where = f" ({pair} has outputs for {len(have)} months, {have[0]}..{have[-1]})"
    return (
        f"report {pair} {month}: no Parquet output of {', '.join(missing)} for {pair} {month} under {root}{where}; "
        f"fix: bqxdask features --pairs {pair} --start {month} --end {month} "
        f"--families {','.join((*REQUIRED, *OPTIONAL))}"
    )


def _read(root: str, family: str, pair: str, month: str) -> pd.DataFrame:
    return parquet.read_unit(root, family, pair, month).sort_index()


def reg_window(columns: list[str] | pd.Index) -> int | None:
    """The ``reg_rate`` window to draw: 60 if present, else the one nearest to it."""
    windows = [int(m.group(1)) for c in columns if (m := re.fullmatch(r"w(\d+)_pred", c))]
    if not windows:
        return None
    return min(windows, key=lambda w: (abs(w - PREFERRED_REG_WINDOW), w))


def bqx_return_columns(columns: list[str] | pd.Index) -> list[str]:
    found = [(int(m.group(1)), c) for c in columns if (m := re.fullmatch(r"w(\d+)_bqx_return", c))]
    return [c for _, c in sorted(found)]


def _assemble(frames: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The columns the page draws, one row per bar (every family has one row per accepted bar)."""
    bqx, boll, tech = frames["bqx"], frames["bollinger_rate"], frames["technical_rate"]
    parts = [
        bqx[["rate_index", *bqx_return_columns(bqx.columns)]],
        boll[[f"bb_{k}_{BOLLINGER_N}" for k in ("lower", "middle", "upper")]],
        tech[["rsi_14", "macd", "macd_signal", "macd_hist"]],
    ]
    reg = frames.get("reg_rate")
    if reg is not None and (w := reg_window(reg.columns)) is not None:
        parts.append(reg[[f"w{w}_pred"]])
    return pd.concat(parts, axis=1, join="outer").sort_index()


def thin(data: pd.DataFrame, max_points: int) -> tuple[pd.DataFrame, int]:
    """Every k-th row (and the last one) so that at most about ``max_points`` rows remain."""
    k = max(1, math.ceil(len(data) / max(1, max_points)))
    if k == 1:
        return data, 1
    take = np.unique(np.r_[np.arange(0, len(data), k), len(data) - 1])
    return data.iloc[take], k


#: a pause between bars longer than this is drawn as a gap
GAP = pd.Timedelta(minutes=30)


def break_gaps(data: pd.DataFrame, gap: pd.Timedelta = GAP) -> pd.DataFrame:
    """Insert one all-NaN row inside every gap longer than ``gap`` (weekends, outages).

    Bokeh lines and areas stop at NaN, so a weekend shows as a gap instead of a straight line
    drawn from Friday's last bar to Sunday's first.
    """
    if len(data) < 2:
        return data
    delta = data.index[1:] - data.index[:-1]
    starts = data.index[:-1][delta > gap]
    if len(starts) == 0:
        return data
    filler = pd.DataFrame(np.nan, index=starts + pd.Timedelta(minutes=1), columns=data.columns)
    return pd.concat([data, filler]).sort_index(kind="stable")


# -- drawing ----------------------------------------------------------------------------------
def _source(data: pd.DataFrame):
    from bokeh.models import ColumnDataSource

    x = data.index.as_unit("us").asi8 / 1000.0  # Bokeh's datetime axis: ms since the epoch, UTC
    cols: dict[str, Any] = {"x": x}
    for c in data.columns:
        cols[c] = data[c].to_numpy(dtype="float32", na_value=np.nan)
    return ColumnDataSource(cols)


def _figure(title: str, height: int, x_range=None, **kw):
    from bokeh.plotting import figure

    args = {"x_range": x_range} if x_range is not None else {}
    p = figure(
        title=title,
        height=height,
        x_axis_type="datetime",
        tools=_TOOLS,
        active_scroll="xwheel_zoom",
        sizing_mode="stretch_width",
        **args,
        **kw,
    )
    p.toolbar.logo = None
    return p


def _finish_legend(p) -> None:
    p.legend.location = "top_left"
    p.legend.click_policy = "hide"
    p.legend.label_text_font_size = "9pt"
    p.legend.background_fill_alpha = 0.6


def _layout(
    pair: str,
    month: str,
    data: pd.DataFrame,
    metas: dict[str, dict[str, Any] | None],
    notes: list[str],
    max_points: int,
):
    from bokeh.layouts import column
    from bokeh.models import Div, HoverTool, Span

    rows = len(data)
    shown, k = thin(data, max_points)
    src = _source(break_gaps(shown))

    price = _figure(f"{pair.upper()} index idx = 100·close/B, Bollinger band ({BOLLINGER_N} bars, 2σ)", 330)
    # lines, not a filled varea: lines stop at the NaN rows of weekend gaps, areas do not
    for side in ("upper", "lower"):
        price.line(
            "x",
            f"bb_{side}_{BOLLINGER_N}",
            source=src,
            color="#6baed6",
            line_width=1,
            legend_label=f"Bollinger {BOLLINGER_N}, 2σ",
        )
    price.line(
        "x",
        f"bb_middle_{BOLLINGER_N}",
        source=src,
        color="#6baed6",
        line_dash="dashed",
        line_width=1,
        legend_label=f"SMA {BOLLINGER_N}",
    )
    idx_line = price.line("x", "rate_index", source=src, color="black", line_width=1.2, legend_label="idx")
    w = reg_window(data.columns)  # the one _assemble picked, if any
    if w is not None:
        degree = (metas.get("reg_rate") or {}).get("params", {}).get("degree", "")
        label = f"regression fit w{w}" + (f" (degree {degree})" if degree else "")
        price.line("x", f"w{w}_pred", source=src, color="#e6550d", line_width=1.2, legend_label=label)
    price.add_tools(
        HoverTool(
            renderers=[idx_line],
            mode="vline",
            tooltips=[("time (UTC)", "@x{%F %H:%M}"), ("idx", "@rate_index{0.0000}")],
            formatters={"@x": "datetime"},
        )
    )
    price.yaxis.axis_label = "idx"
    _finish_legend(price)

    rsi = _figure("RSI(14)", 170, x_range=price.x_range, y_range=(0, 100))
    rsi.line("x", "rsi_14", source=src, color="#756bb1", line_width=1, legend_label="RSI 14")
    for level in (30, 70):
        rsi.add_layout(Span(location=level, dimension="width", line_color="#999999", line_dash="dotted"))
    _finish_legend(rsi)

    macd = _figure("MACD (12, 26, 9)", 190, x_range=price.x_range)
    macd.vbar(
        "x",
        top="macd_hist",
        bottom=0.0,
        width=0.8 * 60_000 * k,
        source=src,
        fill_color="#bdbdbd",
        line_color=None,
        legend_label="histogram",
    )
    macd.line("x", "macd", source=src, color="#3182bd", line_width=1, legend_label="MACD")
    macd.line("x", "macd_signal", source=src, color="#e6550d", line_width=1, legend_label="signal")
    _finish_legend(macd)

    bqx = _figure(
        "BQX returns  w{W}_bqx_return = (Σ idx[t−i] − W·idx[t]) / idx[t]  (positive = price fell)",
        230,
        x_range=price.x_range,
    )
    for i, col in enumerate(bqx_return_columns(data.columns)):
        bqx.line("x", col, source=src, color=_COLORS[i % len(_COLORS)], line_width=1, legend_label=col.split("_")[0])
    bqx.add_layout(Span(location=0, dimension="width", line_color="#999999"))
    _finish_legend(bqx)

    header = Div(text=_header_html(pair, month, data, rows, k, metas, notes), sizing_mode="stretch_width")
    return column(header, price, rsi, macd, bqx, sizing_mode="stretch_width")


def _header_html(
    pair: str,
    month: str,
    data: pd.DataFrame,
    rows: int,
    k: int,
    metas: dict[str, dict[str, Any] | None],
    notes: list[str],
) -> str:
    first, last = data.index[0], data.index[-1]
    present = {f: m for f, m in metas.items() if m}
    runs = sorted({str(m.get("run_id")) for m in present.values() if m.get("run_id")})
    versions = sorted({str(m.get("bqxdask_version")) for m in present.values() if m.get("bqxdask_version")})
    talib = sorted({str(m.get("talib_version")) for m in present.values() if m.get("talib_version")})
    baseline = present["bqx"].get("baseline")
    facts = [
        f"{rows:,} bars, {first:%Y-%m-%d %H:%M} → {last:%Y-%m-%d %H:%M} UTC",
        f"run{'s' * (len(runs) > 1)} {', '.join(runs) or '?'}",
        f"bqxdask {', '.join(versions) or '?'}",
    ]
    if talib:
        facts.append(f"TA-Lib {', '.join(talib)}")
    if baseline is not None:
        facts.append(f"baseline B = {baseline:.6g}")
    if k > 1:
        facts.append(f"drawn: 1 bar in {k}")
    families = ", ".join(f"{f} (config {m.get('config_hash', '?')})" for f, m in present.items())
    note_html = "".join(f"<p style='color:#a15c00'>{html.escape(n)}</p>" for n in notes)
    return (
        f"<h2 style='margin:0.2em 0'>{html.escape(pair.upper())} — {html.escape(month)}</h2>"
        f"<p style='margin:0.2em 0'>{html.escape(' · '.join(facts))}</p>"
        f"<p style='margin:0.2em 0;color:#666;font-size:90%'>features: {html.escape(families)}</p>{note_html}"
    )


def _write_html(layout, path: Path, *, title: str) -> None:
    """The page with Bokeh's JavaScript inlined (works offline), written atomically."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    page = file_html(layout, INLINE, title=title).encode("utf-8")
    fs, folder = parquet.filesystem(str(path.parent))
    fs.makedirs(folder, exist_ok=True)
    parquet.write_atomic(fs, posixpath.join(folder, path.name), lambda fh: fh.write(page))
