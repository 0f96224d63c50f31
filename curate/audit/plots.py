"""Static PNG plots of an audit (matplotlib, Agg; no display or pyplot state needed).

Each function returns a matplotlib Figure, or None when the audit lacks the data for it.
matplotlib is imported inside the functions so `import curate.audit` stays light.
"""

from __future__ import annotations

import io

import polars as pl

from curate.audit.tables import Audit

_WIDTH, _HEIGHT = 7.0, 3.6


def _figure(height: float = _HEIGHT, width: float = _WIDTH):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def png_bytes(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def funnel_plot(audit: Audit):
    funnel = audit.funnel()
    if funnel.height == 0:
        return None
    figure = _figure(height=0.45 * funnel.height + 1.2)
    axes = figure.add_subplot()
    labels = funnel["step"].to_list()[::-1]
    axes.barh(labels, funnel["rows_out"].to_list()[::-1], color="#4c72b0", label="rows out")
    axes.barh(labels, funnel["rejected"].to_list()[::-1], left=funnel["rows_out"].to_list()[::-1],
              color="#dd8452", label="rejected")
    axes.set_xscale("symlog")
    axes.set_xlabel("rows (symlog scale)")
    axes.set_title("Rows after each step")
    axes.legend(loc="lower right")
    return figure


def lengths_plot(audit: Audit, column: str | None = None):
    column = column or audit.length_column()
    rows = audit.rows("all")
    if not {"teacher", column} <= set(rows.columns):
        return None
    values = rows.filter(pl.col(column).is_not_null())
    teachers = values["teacher"].unique().sort().to_list()
    if not teachers:
        return None
    figure = _figure()
    axes = figure.add_subplot()
    # polars types max() as any Python literal; the column is numeric and has no nulls here.
    upper = max(float(values[column].max()), 1.0)  # type: ignore[arg-type]
    for teacher in teachers:
        axes.hist(values.filter(pl.col("teacher") == teacher)[column].to_list(), bins=30, range=(0, upper),
                  alpha=0.55, label=teacher)
    axes.set_xlabel(column)
    axes.set_ylabel("traces")
    axes.set_title(f"{column} per teacher (all generated traces)")
    axes.legend()
    return figure


def pass_rate_plot(audit: Audit):
    rates = audit.pass_rates("all")
    if rates.height == 0:
        return None
    figure = _figure()
    axes = figure.add_subplot()
    axes.hist(rates["pass_rate"].to_list(), bins=20, range=(0, 1), color="#55a868")
    axes.set_xlabel("pass rate")
    axes.set_ylabel("problems")
    axes.set_title("Pass rate per problem")
    return figure


def agreement_plot(audit: Audit):
    agreement = audit.agreement()
    if agreement.height == 0:
        return None
    matrix = agreement.pivot("teacher_b", index="teacher_a", values="agreement").sort("teacher_a")
    teachers = matrix["teacher_a"].to_list()
    values = matrix.select(teachers).to_numpy()
    size = 1.2 + 0.9 * len(teachers)
    figure = _figure(height=size, width=size + 1.8)
    axes = figure.add_subplot()
    image = axes.imshow(values, vmin=0, vmax=1, cmap="viridis")
    axes.set_xticks(range(len(teachers)), teachers, rotation=30, ha="right")
    axes.set_yticks(range(len(teachers)), teachers)
    for row in range(len(teachers)):
        for col in range(len(teachers)):
            if values[row, col] == values[row, col]:  # NaN where two teachers share no problem
                axes.text(col, row, f"{values[row, col]:.2f}", ha="center", va="center", color="white")
    axes.set_title("Teacher agreement (solved / failed)")
    figure.colorbar(image, ax=axes)
    return figure


def pruning_plot(audit: Audit):
    pruning = audit.pruning()
    if pruning.height == 0:
        return None
    figure = _figure()
    axes = figure.add_subplot()
    positions = range(pruning.height)
    axes.bar([p - 0.2 for p in positions], pruning["tokens_before"].to_list(), width=0.4, label="before pruning")
    axes.bar([p + 0.2 for p in positions], pruning["tokens_after"].to_list(), width=0.4, label="after pruning")
    axes.set_xticks(list(positions), pruning["teacher"].to_list())
    axes.set_ylabel("reasoning tokens (kept rows)")
    axes.set_title("Tokens saved by pruning")
    axes.legend()
    return figure


PLOTS = {
    "funnel": funnel_plot,
    "lengths": lengths_plot,
    "pass_rate": pass_rate_plot,
    "agreement": agreement_plot,
    "pruning": pruning_plot,
}


def all_plots(audit: Audit) -> dict[str, bytes]:
    """PNG bytes of every plot the audit has data for, by name."""
    pngs = {}
    for name, plot in PLOTS.items():
        figure = plot(audit)
        if figure is not None:
            pngs[name] = png_bytes(figure)
    return pngs
