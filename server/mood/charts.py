"""Daily check trends as inline SVG, drawn on the server like the PHQ-9/GAD-7 chart (no
scripts, no external files): mood, anxiety and urges on one 0-10 chart, sleep on another."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from care.mood import MoodEntry

WIDTH, HEIGHT, PAD = 640, 200, 32
Series = tuple[str, str, Callable[[MoodEntry], float | None]]


def _chart(
    entries: Sequence[MoodEntry],
    series: Sequence[Series],
    top: float,
    ticks: Sequence[int],
    label: str,
) -> str:
    ordered = sorted(entries, key=lambda e: e.day)
    first = ordered[0].day if ordered else None
    span = max(1, (ordered[-1].day - first).days) if first is not None and ordered else 1

    def xy(entry: MoodEntry, value: float) -> tuple[float, float]:
        offset = 0 if first is None else (entry.day - first).days
        x = PAD + (WIDTH - 2 * PAD) * offset / span
        y = HEIGHT - PAD - (HEIGHT - 2 * PAD) * value / top
        return x, y

    grid = []
    for v in ticks:
        y = HEIGHT - PAD - (HEIGHT - 2 * PAD) * v / top
        grid.append(
            f'<line x1="{PAD}" x2="{WIDTH - PAD}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d9dcd6"/>'
            f'<text x="4" y="{y + 4:.1f}" font-size="11">{v}</text>'
        )
    lines, legend = [], []
    for index, (name, colour, value_of) in enumerate(series):
        legend.append(
            f'<text x="{PAD + 80 * index}" y="16" font-size="12" fill="{colour}">{name}</text>'
        )
        points = [(e, v) for e in ordered if (v := value_of(e)) is not None]
        if not points:
            continue
        path = " ".join("{:.1f},{:.1f}".format(*xy(e, v)) for e, v in points)
        lines.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2.5" points="{path}"/>'
        )
        for e, v in points:
            x, y = xy(e, v)
            lines.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
                f"<title>{name} {v:g} on {e.day.isoformat()}</title></circle>"
            )
    if first is not None:
        last = ordered[-1].day
        lines.append(
            f'<text x="{PAD}" y="{HEIGHT - 8}" font-size="11">{first:%b} {first.day}</text>'
            f'<text x="{WIDTH - PAD}" y="{HEIGHT - 8}" font-size="11" text-anchor="end">'
            f"{last:%b} {last.day}</text>"
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{label}">{"".join(grid)}{"".join(legend)}{"".join(lines)}</svg>'
    )


def scores_svg(entries: Sequence[MoodEntry], *, urges: bool) -> str:
    """Mood and anxiety (and urges in substance-use programs), 0-10, by day."""
    series: list[Series] = [
        ("Mood", "#2f6f6a", lambda e: e.mood),
        ("Anxiety", "#8a5a00", lambda e: e.anxiety),
    ]
    if urges:
        series.append(("Urges", "#7a1c1c", lambda e: e.urges))
    label = "Daily mood, anxiety" + (" and urges" if urges else "") + " over time"
    return _chart(entries, series, 10, (0, 2, 4, 6, 8, 10), label)


def sleep_svg(entries: Sequence[MoodEntry]) -> str:
    """Hours of sleep by day."""
    top = max(12.0, *(e.sleep_hours for e in entries)) if entries else 12.0
    return _chart(
        entries,
        [("Sleep (hours)", "#3b5b9a", lambda e: e.sleep_hours)],
        top,
        (0, 4, 8, 12),
        "Hours of sleep over time",
    )
