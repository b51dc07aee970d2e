"""Figure helpers that need no run."""

from casa_eval.report.figures import _spaced_labels


def test_clustered_points_are_labelled_once_and_distant_ones_each() -> None:
    # Six cross-attention-like models within 0.05 MiB of each other, two far apart; all at accuracy 0.
    xs = [0.56, 0.60, 0.61, 0.62, 0.63, 0.64, 0.94, 2.05]
    points = [{"x": x, "y": 0.0} for x in xs]
    assert _spaced_labels(points) == [True, False, False, False, False, False, True, True]


def test_points_far_apart_in_accuracy_keep_their_labels() -> None:
    points = [{"x": 0.0, "y": 0.5}, {"x": 1.0, "y": 0.2}, {"x": 1.0, "y": 0.8}, {"x": 1.01, "y": 0.21},
              {"x": 2.0, "y": 0.5}]
    assert _spaced_labels(points) == [True, True, True, False, True]
