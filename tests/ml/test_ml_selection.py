"""Epoch selection: the best epoch wins unless a later epoch (or a lower validation loss) ties with it within
the paired bootstrap interval; the rule that decided is named, and a small split is flagged."""
from __future__ import annotations

import random

import pytest

from worker.ml.intervals import point_scores
from worker.ml.selection import choose_epoch


def validation(n: int, seed: int = 0) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(2) for _ in range(n)]


def flip(truth: list[int], wrong: set[int]) -> list[int]:
    return [1 - t if i in wrong else t for i, t in enumerate(truth)]


def entry(epoch: int, truth: list[int], predictions: list[int], val_loss: float = 0.5) -> dict:
    scores = point_scores(truth, predictions, 2)
    return {"epoch": epoch, "accuracy": scores["accuracy"], "macro_f1": scores["macro_f1"], "val_loss": val_loss,
            "predictions": predictions}


def test_a_later_epoch_one_document_behind_wins_the_tie_and_the_small_split_is_flagged():
    truth = validation(340)  # the case: 340 texts, epoch 2 ahead of epoch 3 by one document
    history = [entry(1, truth, flip(truth, set(range(0, 340, 4)))),
               entry(2, truth, flip(truth, set(range(0, 340, 6)))),
               entry(3, truth, flip(truth, set(range(0, 340, 6)) | {1}))]

    choice = choose_epoch(history, truth, 2)

    assert choice["best_epoch"] == 2 and choice["epoch"] == 3 and choice["rule"] == "tie->later"
    assert choice["tied_epochs"] == [2, 3]  # epoch 1 is 8 points behind: not a tie
    assert "340 texts is too small to tell epochs apart" in choice["warning"]


def test_a_clearly_better_epoch_is_kept_without_a_warning():
    truth = validation(3000)
    history = [entry(1, truth, flip(truth, set(range(0, 3000, 5)))),
               entry(2, truth, flip(truth, set(range(0, 3000, 10)))),
               entry(3, truth, flip(truth, set(range(0, 3000, 7))))]

    choice = choose_epoch(history, truth, 2)

    assert (choice["epoch"], choice["rule"], choice["tied_epochs"], choice["warning"]) == (2, "best", [2], None)


def test_equal_scores_go_to_the_later_epoch():
    truth = validation(500)
    same = flip(truth, set(range(0, 500, 8)))
    history = [entry(1, truth, flip(truth, set(range(0, 500, 3)))), entry(2, truth, same), entry(3, truth, same)]

    assert choose_epoch(history, truth, 2)["epoch"] == 3


def test_lower_validation_loss_breaks_a_tie_in_either_direction():
    truth = validation(340)
    history = [entry(1, truth, flip(truth, set(range(0, 340, 6)) | {1}), val_loss=0.30),
               entry(2, truth, flip(truth, set(range(0, 340, 6))), val_loss=0.35),
               entry(3, truth, flip(truth, set(range(0, 340, 6)) | {3}), val_loss=0.40)]

    choice = choose_epoch(history, truth, 2, prefer="lower_loss")

    assert (choice["best_epoch"], choice["epoch"], choice["rule"]) == (2, 1, "tie->lower loss")


def test_without_predictions_the_tie_falls_back_to_the_binomial_half_width_of_the_split():
    history = [{"epoch": 1, "macro_f1": 0.80}, {"epoch": 2, "macro_f1": 0.84}, {"epoch": 3, "macro_f1": 0.83}]

    small = choose_epoch(history, val_size=340)  # half-width ~0.04: epoch 3 ties
    large = choose_epoch(history, val_size=20000)  # half-width ~0.005: it does not

    assert (small["epoch"], small["rule"]) == (3, "tie->later") and small["warning"]
    assert (large["epoch"], large["rule"], large["warning"]) == (2, "best", None)


def test_one_epoch_is_chosen_by_itself_without_a_warning():
    truth = validation(20)

    choice = choose_epoch([entry(1, truth, truth)], truth, 2)

    assert (choice["epoch"], choice["rule"], choice["warning"]) == (1, "best", None)


def test_run_after_every_epoch_the_later_rule_only_ever_keeps_its_choice_or_takes_the_new_epoch():
    """What lets the trainer keep a single model state: the chosen epoch is the previous choice or the latest."""
    rng = random.Random(11)
    truth = validation(300, seed=11)
    history = [entry(e, truth, flip(truth, set(rng.sample(range(300), rng.randrange(20, 60))))) for e in range(1, 9)]

    chosen = [choose_epoch(history[:t], truth, 2)["epoch"] for t in range(1, 9)]

    for t in range(1, 8):
        assert chosen[t] in (chosen[t - 1], t + 1)


def test_an_empty_validation_split_ties_everything_and_says_so():
    history = [{"epoch": 1, "macro_f1": 0.0, "predictions": []}, {"epoch": 2, "macro_f1": 0.0, "predictions": []}]

    choice = choose_epoch(history, [], 2)

    assert (choice["epoch"], choice["rule"]) == (2, "tie->later")
    assert choice["warning"].startswith("validation split of 0 texts")


def test_selection_is_deterministic_for_a_seed():
    truth = validation(200)
    history = [entry(e, truth, flip(truth, set(range(e, 200, 9 + e)))) for e in range(1, 4)]

    assert choose_epoch(history, truth, 2, seed=5) == choose_epoch(history, truth, 2, seed=5)


def test_bad_calls_are_refused():
    with pytest.raises(ValueError, match="no epochs"):
        choose_epoch([], val_size=10)
    with pytest.raises(ValueError, match="prefer"):
        choose_epoch([{"epoch": 1, "macro_f1": 0.5}], val_size=10, prefer="earlier")
    with pytest.raises(ValueError, match="val_size"):
        choose_epoch([{"epoch": 1, "macro_f1": 0.5}])
