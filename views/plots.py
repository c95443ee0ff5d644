"""The page's plots as plotly figures, shown through gr.Plot.

Gradio's native LinePlot / ScatterPlot (Vega) have no log axes and throw `offsetWidth` errors in the
browser when redrawn; plotly draws true log axes with decade ticks and hover values. Every curve
is one trace named by its legend entry, so a test can read the figure's data back (API output:
``{"type": "plotly", "plot": <figure JSON>}``; browser: the plotly div's ``data``).
"""
from __future__ import annotations

import math

import plotly.graph_objects as go

# one colour per set-up slot (plotly's default sequence), so a curve keeps its colour between updates
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")
LOG_AXIS = dict(type="log", dtick=1, exponentformat="power", showgrid=True, minor=dict(showgrid=True))


def _layout(fig: go.Figure, x_title: str, y_title: str, height: int = 380) -> go.Figure:
    fig.update_layout(template="plotly_white", height=height, margin=dict(l=60, r=10, t=44, b=50),
                      xaxis_title=x_title, yaxis_title=y_title, hovermode="closest",
                      legend=dict(orientation="h", yanchor="top", y=-0.18, x=0))
    return fig


def order_text(order: float | None) -> str:
    """A fitted order as every place on the page writes it."""
    return "-" if order is None else f"{order:.2f}"


def errors_figure(found: list[dict], names: dict[int, str]) -> go.Figure:
    """Relative error against NFE on log-log axes, one trace per set-up (``names``: slot -> legend entry).
    An exact answer (error 0) or a lost one (None) has no logarithm: left out of the plot only."""
    fig = go.Figure()
    for slot, name in names.items():
        mine = [r for r in found if r["setup"] == slot and r["error"]]
        fig.add_trace(go.Scatter(x=[r["nfe"] for r in mine], y=[r["error"] for r in mine], name=name,
                                 mode="lines+markers", line=dict(color=COLOURS[(slot - 1) % len(COLOURS)]),
                                 customdata=[r["steps"] for r in mine],
                                 hovertemplate="NFE %{x}<br>steps %{customdata}<br>error %{y:.3g}"))
    fig.update_xaxes(**dict(LOG_AXIS, dtick="D2"))   # NFE spans about a decade: 2 and 5 labelled too
    fig.update_yaxes(**LOG_AXIS)
    return _layout(fig, "model evaluations (NFE)", "relative error |x - x_ref| / |x_ref|")


def schedule_figure(rows: list[dict], axis: str) -> go.Figure:
    """The noise level of every model evaluation, one trace per set-up; ``axis`` 'log10 sigma' or 'lambda'.
    sigma 0 (the end) and inf (zero terminal SNR) have no finite logarithm: left out of the plot only."""
    fig = go.Figure()
    for i, label in enumerate(dict.fromkeys(r["label"] for r in rows)):
        mine = [r for r in rows if r["label"] == label and r["sigma"] is not None and 0 < r["sigma"] < math.inf]
        values = [math.log10(r["sigma"]) if axis == "log10 sigma" else -math.log(r["sigma"]) for r in mine]
        fig.add_trace(go.Scatter(x=[r["index"] for r in mine], y=values, name=label, mode="lines+markers",
                                 line=dict(color=COLOURS[i % len(COLOURS)], width=1),
                                 customdata=[[r["t"], r["sigma"], r["step"]] for r in mine],
                                 hovertemplate="evaluation %{x}<br>t %{customdata[0]:.1f}<br>sigma "
                                               "%{customdata[1]:.4g}<br>step %{customdata[2]}"))
    y_title = "log10 sigma" if axis == "log10 sigma" else "lambda = -ln sigma"
    return _layout(fig, "model evaluation", y_title)


def trace_figures(rows: list[dict], change_series: dict, norm_series: dict) -> tuple[go.Figure, go.Figure]:
    """Under Generate: the per-evaluation relative changes (log y) and the RMS of the sample and x0."""
    change = go.Figure()
    for i, (key, name) in enumerate(change_series.items()):
        mine = [r for r in rows if r[key] is not None and 0 < r[key] < math.inf]
        change.add_trace(go.Scatter(x=[r["nfe"] for r in mine], y=[r[key] for r in mine], name=name,
                                    mode="lines+markers", line=dict(color=COLOURS[i]),
                                    hovertemplate="NFE %{x}<br>%{y:.3g}"))
    change.update_yaxes(**LOG_AXIS)
    norm = go.Figure()
    for i, (key, name) in enumerate(norm_series.items()):
        mine = [r for r in rows if r[key] is not None]
        norm.add_trace(go.Scatter(x=[r["nfe"] for r in mine], y=[r[key] for r in mine], name=name,
                                  mode="lines+markers", line=dict(color=COLOURS[i]),
                                  hovertemplate="NFE %{x}<br>RMS %{y:.3g}"))
    return (_layout(change, "model evaluation (NFE)", "relative change", 320),
            _layout(norm, "model evaluation (NFE)", "RMS", 320))


def points_figure(groups: dict[str, list[tuple[float, float]]], colours: dict[str, str], extent: float) -> go.Figure:
    """2-D end points, one trace per group (set-up, reference, data), on equal axes."""
    fig = go.Figure()
    for name, points in groups.items():
        fig.add_trace(go.Scatter(x=[p[0] for p in points], y=[p[1] for p in points], name=name, mode="markers",
                                 marker=dict(color=colours.get(name), size=5, opacity=0.8),
                                 hovertemplate="x %{x:.3f}<br>y %{y:.3f}"))
    fig.update_xaxes(range=[-extent, extent])
    fig.update_yaxes(range=[-extent, extent], scaleanchor="x", scaleratio=1)
    return _layout(fig, "x", "y", 420)


def curves(plot) -> dict[str, dict]:
    """Trace name -> {x, y} of a figure as the API returns it (a test helper, and a doc of the format)."""
    import json

    figure = json.loads(plot["plot"]) if isinstance(plot, dict) and "plot" in plot else plot.to_plotly_json()
    return {t.get("name"): dict(x=list(t.get("x", [])), y=list(t.get("y", []))) for t in figure["data"]}
