"""Where an RMSE would have placed on the Galaxy Zoo challenge's private leaderboard.

Indicative only: the Kaggle test set is not the set a user scores on here. The
full private leaderboard (326 teams) could not be found in public copies, so
this module knows the places whose scores are published and says how tightly
they bound the place of a new score, rather than guessing one.
"""

from __future__ import annotations

#: Teams on the final private leaderboard (Kaggle's competition page:
#: "Completed - $16,000 - 326 teams"). Competitors' blogs say "out of 329".
N_TEAMS = 326

#: Private scores of places 1..5, in order (5 entries). Places 1-3 as in
#: the project's ANCHORS.md notes (the winners' write-ups). Places 4-5 and the names from
#: a "Winners" table in a public competition summary, a Markdown file "Competition
#: Details" found by the search tool's code corpus (repository not named in the
#: excerpt); it lists 0.07491, 0.07752, 0.07869, 0.07951, 0.07952, i.e. 1e-5 below
#: ANCHORS for places 1-2 (a difference in rounding).
TOP_SCORES: tuple[float, ...] = (0.07492, 0.07753, 0.07869, 0.07951, 0.07952)
TOP_NAMES: tuple[str, ...] = ("sedielem", "Maxim Milakov", "6789", "simon", "Julian de Wit")

#: Other places with a published private score: (place, RMSE, who).
#: 145th "of 329" with 0.12859: an Extra-Trees entry written up at
#: https://mjd2.blogs.rice.edu/2014/05 (Rice University course project).
#: 305th-311th: the final standings around the original student project (which
#: placed its 0.17493 "at about 308th"), as its report shows them; recorded in
#: the project's shared field notes (ANCHORS.md beside the checkout).
#: Places 28, 56 and 120 are mentioned in other blogs, without their scores.
PARTIAL_PLACES: tuple[tuple[int, float, str], ...] = (
    (145, 0.12859, "an Extra-Trees entry"),
    (305, 0.16869, "khazhar"),
    (306, 0.16926, "bp123"),
    (307, 0.17192, "ktisha"),
    (308, 0.17547, "Travis Silvers"),
    (309, 0.17586, "Timothy Roberts"),
    (310, 0.18095, "hkostadin"),
    (311, 0.18392, "AtLast"),
)

#: Kaggle's benchmark submissions (not teams), as listed by Kaggle (ANCHORS.md).
BENCHMARKS: tuple[tuple[str, float], ...] = (
    ("central pixel benchmark", 0.16194),
    ("all zeros benchmark", 0.27160),
)

def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _known_places() -> list[tuple[int, float, str]]:
    top = [(i + 1, s, n) for i, (s, n) in enumerate(zip(TOP_SCORES, TOP_NAMES))]
    return sorted(top + list(PARTIAL_PLACES))


def leaderboard_place(rmse: float) -> dict:
    """Place ``rmse`` would have taken among the 326 teams, as far as the known scores tell.

    A tie takes the place of the team it ties with. ``place`` is exact only
    where known places are adjacent (1st-5th, 305th-311th); elsewhere
    ``place`` is None and ``place_range`` = [best, worst] bounds it by the
    nearest known places; below the last known place the range runs to the
    last place, ``N_TEAMS`` (a place never exceeds the count).
    ``better_than`` names every known place and benchmark the score beats or
    equals.
    """
    r = float(rmse)
    if r != r or r < 0:
        raise ValueError(f"rmse must be a non-negative number, got {rmse!r}")
    known = _known_places()
    best = 1 + max((p for p, s, _ in known if s < r), default=0)
    worst = min((p for p, s, _ in known if s >= r), default=N_TEAMS)
    place = best if best == worst else None
    better_than = [f"{_ordinal(p)} place ({who}, {s:.5f})" for p, s, who in known if r <= s]
    better_than += [f"{name} ({s:.5f})" for name, s in BENCHMARKS if r <= s]
    if place is not None:
        note = f"would have placed {_ordinal(place)} of {N_TEAMS}"
    elif worst == N_TEAMS and best > max(p for p, _, _ in known):
        note = (f"worse than the {_ordinal(best - 1)} place, the last published score: between "
                f"{_ordinal(best)} and last ({_ordinal(N_TEAMS)})")
    else:
        below = next((p, s) for p, s, _ in known if p == best - 1) if best > 1 else None
        above = next(s for p, s, _ in known if p == worst)
        note = ("no place: it falls between "
                + (f"the {_ordinal(below[0])} place ({below[1]:.5f}) and " if below else "")
                + f"the {_ordinal(worst)} ({above:.5f}), and no score between those is published")
    return {
        "place": place,
        "of": N_TEAMS,
        "place_range": [best, worst],
        "better_than": better_than,
        "note": note + " (indicative: a different test set than Kaggle's private one)",
    }
