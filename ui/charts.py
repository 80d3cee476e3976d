"""Every chart the app draws: Altair specs built once, data rows passed beside them.

Validating an Altair chart costs 10-40 ms and a page draws several, live
charts twice a second: so each spec is built with Altair once per process,
then copied and filled in. A string "@name" in a spec is a placeholder that
`filled` replaces (["@name"] for a list). Each builder returns a spec with its
rows inside, for `st.vega_lite_chart(spec)`, and every spec has a description
that names it for screen readers and tests. Every scale has an explicit
domain: the browser may draw a chart before its rows arrive, and Vega warns
of an empty extent (hundreds of times over a live run) unless told the range.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence

import altair as alt

from date_seq2seq.comparison import RunReport, Variant
from date_seq2seq.config import ATTENTION_KINDS
from date_seq2seq.data import MONTHS
from date_seq2seq.forming import Snapshot

Chart = dict  # a Vega-Lite spec, its data inline


@functools.cache
def _spec_text(build: Callable[[], alt.TopLevelMixin]) -> str:
    spec = build().to_dict()
    # Altair gives a chart without data an empty named data set of one blank
    # row; drawn beside the real rows it becomes a NaN row. The rows passed
    # with the spec are the only data.
    for part in [spec, *spec.get("layer", [])]:
        part.pop("data", None)
    spec.pop("datasets", None)
    return json.dumps(spec)


def filled(build: Callable[[], alt.TopLevelMixin], **values: object) -> dict:
    """A fresh copy of the spec `build` makes, its placeholders replaced."""
    text = _spec_text(build)
    for name, value in values.items():
        hole = [f"@{name}"] if isinstance(value, list) else f"@{name}"
        text = text.replace(json.dumps(hole), json.dumps(value))
    return json.loads(text)


def with_rows(rows: list[dict], spec: dict) -> Chart:
    """The spec with its data rows inline."""
    spec["data"] = {"values": rows}
    return spec


def labels(names: Sequence[str]) -> str:
    """A Vega expression labelling position i of an axis with names[i].

    Positions, not the names, go on the axes: repeated '-' or '1' would collapse.
    """
    return f"{json.dumps(list(names))}[datum.value]"


# --- attention ------------------------------------------------------------------


def _heatmap() -> alt.LayerChart:
    base = alt.Chart().encode(
        x=alt.X(
            "input_position:O",
            title="input character",
            axis=alt.Axis(labelExpr="@x_labels", labelAngle=0, orient="top"),
        ),
        y=alt.Y(
            "output_step:O", title="output token", axis=alt.Axis(labelExpr="@y_labels")
        ),
    )
    cells = base.mark_rect(stroke="#e6e6e6", strokeWidth=0.5).encode(
        # White at 0: a weight of nothing is drawn as nothing (clear on a projector).
        color=alt.Color(
            "weight:Q",
            scale=alt.Scale(
                domain=[0, 1], range=["#ffffff", "#08306b"], interpolate="rgb"
            ),
            title="attention",
        ),
        tooltip=[
            alt.Tooltip("output_token:N", title="output"),
            alt.Tooltip("input_char:N", title="input"),
            alt.Tooltip("input_position:O", title="position"),
            alt.Tooltip("weight:Q", format=".3f"),
        ],
    )
    text = base.mark_text(fontSize=11).encode(
        text=alt.Text("weight:Q", format=".2f"),
        color=alt.condition(
            alt.datum.weight > 0.5, alt.value("white"), alt.value("#333")
        ),
    )
    return (cells + text).properties(height=340, description="@description")


# Past this many input columns the weights are not written in the cells: on a
# projector (1280 x 720 at 150%) their numbers would run into each other. The
# colour and the tooltip still give each one.
MAX_NUMBERED_COLUMNS = 16


def attention_chart(
    chars: Sequence[str],
    tokens: Sequence[str],
    weights: Sequence[Sequence[float]],
    description: str,
) -> Chart:
    """Heatmap rows and spec: input position on x, output token on y."""
    chars, tokens = list(chars), list(tokens)
    rows = [
        {
            "output_step": i,
            "output_token": token,
            "input_position": j,
            "input_char": chars[j],
            "weight": weight,
        }
        for i, (token, row) in enumerate(zip(tokens, weights, strict=True))
        for j, weight in enumerate(row)
    ]
    spec = filled(
        _heatmap,
        x_labels=labels(chars),
        y_labels=labels(tokens),
        description=description,
    )
    if len(chars) > MAX_NUMBERED_COLUMNS:
        spec["layer"] = spec["layer"][:1]  # the cells, without their numbers
    return with_rows(rows, spec)


def _sharpness() -> alt.LayerChart:
    title = alt.Title(
        "Sharpness", subtitle=["Mean of each row's largest weight:", "@blur"]
    )
    line = (
        alt.Chart(title=title)
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "step:Q",
                scale=alt.Scale(domain=["@steps"]),
                axis=alt.Axis(format="d", tickMinStep=1),
            ),
            y=alt.Y("sharpness:Q", scale=alt.Scale(domain=[0, 1])),
            tooltip=["step:Q", alt.Tooltip("sharpness:Q", format=".2f")],
        )
    )
    shown = alt.Chart().mark_rule(color="red").encode(x="step:Q")
    return (line + shown.transform_filter("@shown")).properties(
        height=300, description="sharpness"
    )


def sharpness_chart(snapshots: Sequence[Snapshot], shown: int, inputs: int) -> Chart:
    """Sharpness of every snapshot (of a probe `inputs` characters long), with
    a rule at the step shown."""
    rows = [{"step": s.step, "sharpness": s.sharpness()} for s in snapshots]
    last = max((r["step"] for r in rows), default=0)
    spec = filled(
        _sharpness, shown=f"datum.step == {int(shown)}", steps=[0, last or 1],
        blur=f"1/{inputs} is a blur.",
    )  # fmt: skip
    return with_rows(rows, spec)


# --- one decoder step -------------------------------------------------------------


def _vector() -> alt.Chart:
    return (
        alt.Chart(title=alt.Title("@title", subtitle="@subtitle"))
        .mark_rect()
        .encode(
            x=alt.X(
                "dim:O", title="dimension", axis=alt.Axis(labels=False, ticks=False)
            ),
            color=alt.Color(
                "value:Q",
                scale=alt.Scale(scheme="redblue", domain=["@extent"]),
                legend=None,
            ),
            tooltip=["dim:O", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(height=150, description="@description")
    )


def vector_chart(
    values: Sequence[float], title: str, subtitle: str, description: str
) -> Chart:
    """A vector as one row of cells coloured by value, red < 0 < blue."""
    rows = [{"dim": i, "value": v} for i, v in enumerate(values)]
    most = max((abs(v) for v in values), default=0.0) or 1.0  # 0 stays white
    spec = filled(_vector, title=title, subtitle=subtitle, description=description,
                  extent=[-most, most])  # fmt: skip
    return with_rows(rows, spec)


def _per_input() -> alt.Chart:
    return (
        alt.Chart(title=alt.Title("@title", subtitle="@subtitle"))
        .mark_bar()
        .encode(
            x=alt.X(
                "input_position:O",
                title="input character",
                axis=alt.Axis(labelExpr="@x_labels", labelAngle=0),
            ),
            y=alt.Y("value:Q", title=None, scale=alt.Scale(domain=["@extent"])),
            tooltip=["input_char:N", alt.Tooltip("value:Q", format=".3f")],
        )
        .properties(height=230, description="@description")
    )


def per_input_chart(
    chars: str, values: Sequence[float], title: str, subtitle: str, description: str
) -> Chart:
    """One bar per input character (by position: repeated '-' stay apart)."""
    rows = [
        {"input_position": j, "input_char": c, "value": v}
        for j, (c, v) in enumerate(zip(chars, values, strict=True))
    ]
    low, high = min(0.0, *values), max(0.0, *values)
    spec = filled(
        _per_input,
        x_labels=labels(chars),
        title=title,
        subtitle=subtitle,
        description=description,
        extent=[low, high if high > low else 1.0],
    )
    return with_rows(rows, spec)


def _top() -> alt.Chart:
    return (
        alt.Chart(title=alt.Title("5. Next token", subtitle="the output layer's top 5"))
        .mark_bar()
        .encode(
            y=alt.Y(
                "rank:O",
                title=None,
                axis=alt.Axis(labelExpr="@y_labels", labelOverlap=False),
            ),
            x=alt.X(
                "p:Q",
                title="probability",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%"),
            ),
            tooltip=["token:N", alt.Tooltip("p:Q", format=".1%")],
        )
        .properties(height=230, description="top outputs")
    )


def top_chart(top: Sequence[tuple[str, float]]) -> Chart:
    rows = [{"rank": r, "token": t, "p": p} for r, (t, p) in enumerate(top)]
    return with_rows(rows, filled(_top, y_labels=labels([t for t, _ in top])))


# --- training ---------------------------------------------------------------------


def _loss() -> alt.Chart:
    return (
        alt.Chart(title=alt.Title("Training loss per token", subtitle="each step"))
        .mark_line()
        .encode(
            x=alt.X(
                "step:Q",
                title="step",
                scale=alt.Scale(domain=["@steps"]),
                axis=alt.Axis(format="d", tickMinStep=1),
            ),
            y=alt.Y(
                "loss:Q",
                title="loss per token",
                scale=alt.Scale(type="log", domain=["@extent"]),
            ),
            tooltip=["step:Q", alt.Tooltip("loss:Q", format=".4f")],
        )
        .properties(height=260, description="training loss")
    )


def loss_chart(
    losses: Sequence[float], most_steps: int, most_points: int = 600
) -> Chart:
    """The loss of each step, thinned to at most most_points means of neighbours.

    most_steps fixes the x range, shared with the accuracy chart.
    """
    every = max(1, -(-len(losses) // most_points))
    rows = []
    for first in range(0, len(losses), every):
        chunk = losses[first : first + every]
        # The log scale cannot show 0: a loss that small is shown at 1e-6.
        loss = max(sum(chunk) / len(chunk), 1e-6)
        rows.append({"step": first + len(chunk), "loss": loss})
    shown = [r["loss"] for r in rows] or [1.0]
    extent = [min(shown) / 1.5, max(shown) * 1.5]  # a log scale: no 0 allowed
    return with_rows(rows, filled(_loss, steps=[0, most_steps], extent=extent))


ACCURACY_MEASURES = ("tokens, teacher-forced", "tokens, free-running", "dates exact")


def _accuracy() -> alt.Chart:
    return (
        alt.Chart(
            title=alt.Title(
                "Held-out accuracy",
                # One short line each, so a narrow screen never cuts the point.
                subtitle=[
                    "Tokens right fed the truth (teacher-forced)",
                    "and fed its own output (free-running):",
                    "the gap between them is exposure bias.",
                ],
            ),
        )
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "step:Q",
                title="step",
                scale=alt.Scale(domain=["@steps"]),
                axis=alt.Axis(format="d", tickMinStep=1),
            ),
            y=alt.Y(
                "accuracy:Q",
                title="accuracy",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color(
                "measure:N",
                title=None,
                scale=alt.Scale(
                    domain=ACCURACY_MEASURES, range=["#1f77b4", "#d62728", "#7f7f7f"]
                ),
                legend=alt.Legend(orient="right"),
            ),
            tooltip=["step:Q", "measure:N", alt.Tooltip("accuracy:Q", format=".1%")],
        )
        .properties(height=340, description="held-out accuracy")
    )


def accuracy_chart(
    evals: Sequence[dict[str, float]],
    gaps: Sequence[dict[str, float]],
    most_steps: int,
) -> Chart:
    """Token accuracy both ways, and exact match, at each held-out check.

    Exact match is one line: a date is all right teacher-forced exactly when
    it is all right free-running (training.evaluate_held_out says why).
    """
    rows = [
        {"step": g["step"], "measure": name, "accuracy": g[key]}
        for g in gaps
        for name, key in (
            (ACCURACY_MEASURES[0], "teacher_forced"),
            (ACCURACY_MEASURES[1], "free_running"),
        )
    ]
    rows += [
        {"step": e["step"], "measure": ACCURACY_MEASURES[2], "accuracy": e[key]}
        for e in evals
        if (key := "held_out_exact_match") in e
    ]
    return with_rows(rows, filled(_accuracy, steps=[0, most_steps]))


# --- comparing runs -----------------------------------------------------------------

# A colour per attention kind and a dash per cell, fixed: a variant looks the
# same in every comparison, whatever else was compared with it.
ATTENTION_COLOURS = ("#7f7f7f", "#1f77b4", "#ff7f0e", "#2ca02c")  # none dot gen add
# An exercise's variants differ in other ways: a colour each, in order.
EXERCISE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                    "#8c564b", "#e377c2", "#17becf")  # fmt: skip


def _curves() -> alt.Chart:
    return (
        alt.Chart(
            title=alt.Title(
                "Held-out exact match, free-running",
                subtitle=["Lines that reach 100% together are drawn one",
                          "inside the other: the first variant widest."],
            )
        )
        .mark_line(point=True)
        .encode(
            x=alt.X(
                "step:Q",
                scale=alt.Scale(domain=["@steps"]),
                axis=alt.Axis(format="d", tickMinStep=1),
            ),
            y=alt.Y(
                "exact_match:Q",
                title="exact match",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color(
                "variant:N",
                title=None,
                scale=alt.Scale(domain=["@names"], range=["@colours"]),
                legend=alt.Legend(orient="right"),
            ),
            tooltip=[
                "variant:N",
                "step:Q",
                "epoch:Q",
                alt.Tooltip("seconds:Q", format=".1f"),
                alt.Tooltip("exact_match:Q", format=".1%"),
            ],
        )
        .properties(height=340, description="compared curves")
    )  # fmt: skip


def curves_chart(curves: dict[Variant, list[dict[str, float]]]) -> Chart:
    """Every compared variant's held-out curve: its colour fixed by its attention
    (an exercise's variants: a colour each), its dash by its cell, and one layer
    each, drawn widest first."""
    variants = list(curves)
    rows = [{"variant": v.name, **point} for v in variants for point in curves[v]]
    last = max((r["step"] for r in rows), default=0)
    colours = [ATTENTION_COLOURS[ATTENTION_KINDS.index(v.attention)] for v in variants]
    if any(v.label for v in variants):
        colours = [
            EXERCISE_COLOURS[k % len(EXERCISE_COLOURS)] for k in range(len(variants))
        ]
    spec = filled(_curves, steps=[0, last or 1], names=[v.name for v in variants],
                  colours=colours)  # fmt: skip
    mark, encoding = spec.pop("mark"), spec.pop("encoding")
    spec["layer"] = [
        {
            "mark": {**mark, "strokeWidth": 2 + 2.5 * (len(variants) - 1 - k),
                     "strokeDash": [1, 0] if v.cell == "lstm" else [6, 3]},
            "encoding": encoding,
            "transform": [{"filter": f"datum.variant == {json.dumps(v.name)}"}],
        }
        for k, v in enumerate(variants)
    ]  # fmt: skip
    return with_rows(rows, spec)


def _confusion() -> alt.LayerChart:
    base = alt.Chart().encode(
        # Every month on both axes, in calendar order, so the grid is always 12
        # by 12 (plus whatever else was written, e.g. "?").
        x=alt.X(
            "output:O",
            scale=alt.Scale(domain=["@x_order"]),
            title="month in the output",
            axis=alt.Axis(orient="top", labelAngle=-90, labelOverlap=False),
        ),
        y=alt.Y(
            "right:O",
            scale=alt.Scale(domain=list(MONTHS)),
            title="right month",
            axis=alt.Axis(labelOverlap=False),
        ),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "count:Q",
            scale=alt.Scale(scheme="oranges", type="sqrt", domain=["@extent"]),
        ),
        tooltip=["right:O", "output:O", "count:Q"],
    )
    text = base.mark_text(fontSize=11).encode(text="count:Q")
    return (cells + text).properties(height=380, description="month confusion")


def confusion_chart(report: RunReport) -> Chart:
    """Right month against the month written, counted; other values at the end."""
    rows = [
        {"right": a, "output": b, "count": n}
        for (a, b), n in report.month_confusion.items()
    ]
    others = sorted({b for _, b in report.month_confusion} - set(MONTHS))
    most = max(report.month_confusion.values(), default=1)
    spec = filled(_confusion, x_order=[*MONTHS, *others], extent=[0, most])
    return with_rows(rows, spec)
