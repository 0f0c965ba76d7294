"""The figure's colours: red is the greedy markers' alone, and a verifier keeps its hue in every figure."""

from __future__ import annotations


def test_no_curve_is_drawn_in_the_greedy_markers_red() -> None:
    """A verifier's weighted@k was tab:red beside the red greedy markers (the third signal of a pool)."""
    import colorsys

    from matplotlib.colors import to_rgb

    from ttcl.runtime.analysis.plot import GROUP_COLORS, PALETTE, SIGNAL_COLORS

    for c in [*PALETTE, *GROUP_COLORS, *SIGNAL_COLORS.values()]:
        h, lightness, s = colorsys.rgb_to_hls(*to_rgb(c))
        reddish = s > 0.4 and (h < 0.04 or h > 0.94)  # red's hue, saturated
        assert not reddish, c


def test_a_verifiers_colours_are_its_own_in_every_figure() -> None:
    """A verifier's colour followed the order its signals came in: check_lm_w was orange in one figure and navy
    in another (QA pass). Now its rules share a hue (weighted dark, best light), whatever else is drawn."""
    from ttcl.runtime.analysis.plot import PAIRS, signal_colors

    alone = signal_colors(["pass", "maj", "check_lm_w", "check_lm_best"])
    crowded = signal_colors(["pass", "strict", "maj", "prm_w", "prm_best", "check_lm_w", "check_lm_best", "orm_w"])
    assert alone["check_lm_w"] == crowded["check_lm_w"] and alone["check_lm_best"] == crowded["check_lm_best"]
    assert (crowded["check_lm_w"], crowded["check_lm_best"]) in PAIRS
    verifier_colours = [crowded[s] for s in ("prm_w", "check_lm_w", "orm_w")]
    assert len(set(verifier_colours)) == 3 and crowded["maj"] == "tab:blue"
