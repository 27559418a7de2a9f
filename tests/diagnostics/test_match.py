"""Select and match: the units on across a selection, and the other stretches where they all are."""

import numpy as np
import pytest

from charrnn.diagnostics.match import runs, select_and_match, units_on
from charrnn.errors import ConfigError


def acts_with_stretches():
    rng = np.random.default_rng(0)
    acts = rng.uniform(-0.9, 0.3, size=(30, 8))  # nothing above 0.5 by chance
    for s, e in [(3, 7), (12, 16), (20, 21), (25, 30)]:
        acts[s:e, [2, 5]] = 0.8
    acts[25:30, 2] = 0.2  # only unit 5 is on here
    return acts


def test_units_on_across_the_selection():
    acts = acts_with_stretches()
    assert units_on(acts, 3, 7, 0.5).tolist() == [2, 5]
    assert units_on(acts, 3, 8, 0.5).tolist() == []  # character 7 has them off
    assert units_on(acts, 26, 28, 0.5).tolist() == [5]


def test_matches_are_the_other_stretches_where_all_the_units_are_on():
    acts = acts_with_stretches()
    m = select_and_match(acts, 3, 7, 0.5)
    assert m.units == [2, 5]
    assert m.stretches == [(12, 16)]  # (20, 21) is shorter than half the selection; (25, 30) lacks unit 2
    assert select_and_match(acts, 3, 7, 0.5, min_length=1).stretches == [(12, 16), (20, 21)]
    # a part of a stretch selected: the rest of that stretch is not another match
    assert select_and_match(acts, 4, 6, 0.5, min_length=1).stretches == [(12, 16), (20, 21)]
    assert select_and_match(acts, 26, 28, 0.5).stretches == [(3, 7), (12, 16), (20, 21)]  # min_length 1


def test_nothing_on_means_no_matches():
    acts = acts_with_stretches()
    m = select_and_match(acts, 0, 3, 0.5)
    assert m.units == [] and m.stretches == []


def test_runs():
    assert runs(np.array([0, 1, 1, 0, 1], bool)) == [(1, 3), (4, 5)]
    assert runs(np.zeros(3, bool)) == [] and runs(np.ones(2, bool)) == [(0, 2)]


@pytest.mark.parametrize("start, end", [(-1, 2), (2, 2), (5, 3), (0, 31)])
def test_a_bad_selection_is_refused(start, end):
    with pytest.raises(ConfigError, match="0 <= start < end <= 30"):
        select_and_match(acts_with_stretches(), start, end, 0.5)


def test_a_bad_min_length_is_refused():
    with pytest.raises(ConfigError, match="at least 1 character"):
        select_and_match(acts_with_stretches(), 3, 7, 0.5, min_length=0)
