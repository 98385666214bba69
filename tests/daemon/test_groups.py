"""Category groups: parsing, de-duplication and scores."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from edgebnn.daemon.config import PACKAGE_DATA
from edgebnn.daemon.groups import GroupScorer, deduplicate, parse_tokens, read_indices


def test_tokens_and_ranges() -> None:
    assert parse_tokens("281") == [281]
    assert parse_tokens("1-3, 7 9") == [1, 2, 3, 7, 9]
    for bad in ("3-1", "x", "1-", "-2"):
        with pytest.raises(ValueError):
            parse_tokens(bad)


def test_file_with_comments(tmp_path: Path) -> None:
    f = tmp_path / "g.txt"
    f.write_text("# cats\n281\n282 283 # tabby, tiger\n\n284-285\n")
    assert read_indices(f) == [281, 282, 283, 284, 285]


def test_ells_dog_list_has_one_repeat_which_is_dropped_and_logged(caplog) -> None:
    indices = read_indices(PACKAGE_DATA / "groups" / "dogs.txt")
    with caplog.at_level(logging.DEBUG, logger="edgebnn.daemon.groups"):
        unique = deduplicate("dog", indices)
    assert len(unique) == len(indices) - 1 == len(set(indices))
    assert list(unique) == sorted(unique)
    assert "repeated class indices" in caplog.text


def test_scores_are_sums_of_class_probabilities() -> None:
    probs = np.full(10, 0.01, dtype=np.float32)
    probs[[2, 3]] = [0.5, 0.3]
    scorer = GroupScorer([("a", (2, 3)), ("b", (0, 1, 9))], num_classes=10)
    scores = scorer.scores(probs)
    assert scores["a"] == pytest.approx(0.8)
    assert scores["b"] == pytest.approx(0.03)


def test_indices_beyond_the_model_are_refused() -> None:
    with pytest.raises(ValueError, match="beyond the model's 10 classes"):
        GroupScorer([("a", (2, 10))], num_classes=10)
