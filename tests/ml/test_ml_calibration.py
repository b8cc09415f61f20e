"""Temperature scaling and calibration error, against values worked out by hand."""
from __future__ import annotations

import json
import math

import pytest
import torch

from worker.ml.calibration import (
    calibrate,
    calibrate_multilabel,
    expected_calibration_error,
    fit_label_temperatures,
    fit_temperature,
    multilabel_ece,
    reliability_bins,
)


def test_the_fitted_temperature_is_the_closed_form_optimum():
    # three texts with logits (1, 0), two of class 0: the NLL is least where softmax gives 2/3, at 1/T = ln 2
    assert fit_temperature([[1.0, 0.0]] * 3, [0, 0, 1]) == pytest.approx(1 / math.log(2), rel=1e-6)


def test_the_temperature_that_generated_the_labels_is_recovered():
    torch.manual_seed(0)
    logits = torch.randn(5000, 4) * 3
    labels = torch.multinomial(torch.softmax(logits / 2.0, dim=-1), 1).squeeze(1)

    assert fit_temperature(logits, labels) == pytest.approx(2.0, abs=0.1)


def test_the_temperature_stops_at_its_bounds():
    assert fit_temperature([[1.0, 0.0], [0.0, 1.0]], [0, 1]) == pytest.approx(0.05)  # separable: as sharp as allowed
    assert fit_temperature([[1.0, 0.0], [1.0, 0.0]], [0, 1]) == pytest.approx(20.0)  # coin flip: as flat as allowed
    assert fit_temperature([], []) == 1.0


def test_ece_is_the_gap_between_confidence_and_accuracy():
    logits = [[math.log(9), 0.0], [math.log(9), 0.0]]  # top score 0.9 twice, right once

    bins = reliability_bins(logits, [0, 1])

    assert expected_calibration_error(logits, [0, 1]) == pytest.approx(0.4)
    full = [b for b in bins if b["count"]]
    assert len(bins) == 15 and len(full) == 1
    assert full[0]["low"] == pytest.approx(13 / 15) and full[0]["high"] == pytest.approx(14 / 15)
    assert full[0]["confidence"] == pytest.approx(0.9) and full[0]["accuracy"] == 0.5


def test_bins_hold_every_text_once_from_a_coin_flip_to_certainty():
    logits = [[0.0, 0.0], [0.0, 200.0], [math.log(3), 0.0]]  # top scores 0.5, 1.0 and 0.75

    bins = reliability_bins(logits, [0, 1, 1])

    assert [b["count"] for b in bins] == [0] * 7 + [1] + [0] * 3 + [1] + [0] * 2 + [1]
    assert bins[7]["confidence"] == 0.5 and bins[7]["accuracy"] == 1.0  # (7/15, 8/15]
    assert bins[11]["confidence"] == pytest.approx(0.75) and bins[11]["accuracy"] == 0.0
    assert bins[14]["confidence"] == 1.0 and bins[14]["high"] == 1.0


def test_calibration_lowers_the_error_of_an_overconfident_model_and_is_json_ready():
    torch.manual_seed(1)
    logits = torch.randn(3000, 3) * 4
    labels = torch.multinomial(torch.softmax(logits / 2.5, dim=-1), 1).squeeze(1)

    report = calibrate(logits, labels)

    assert report["temperature"] == pytest.approx(2.5, abs=0.15)
    assert report["ece_after"] < report["ece_before"] / 3
    assert report["nll_after"] < report["nll_before"]
    assert json.loads(json.dumps(report)) == report
    assert calibrate(logits, labels) == report  # deterministic


def test_per_label_temperatures_are_each_labels_own_optimum():
    # label 0: logit 2 on three texts, positive on two -> sigmoid(2/T) = 2/3; label 1: logit 1, the same
    logits = [[2.0, 1.0]] * 3
    y = [[1, 1], [1, 0], [0, 1]]

    per_label = fit_label_temperatures(logits, y)
    shared = fit_label_temperatures(logits, y, shared=True)

    assert per_label == pytest.approx([2 / math.log(2), 1 / math.log(2)], rel=1e-6)
    assert shared[0] == shared[1] and 1 / math.log(2) < shared[0] < 2 / math.log(2)


def test_multilabel_ece_compares_each_probability_with_the_label_being_there():
    logits = [[math.log(4), -math.log(4)]] * 2  # probabilities 0.8 and 0.2
    y = [[1, 0], [0, 0]]  # 0.8: present half the time; 0.2: never

    assert multilabel_ece(logits, y) == pytest.approx((2 * 0.3 + 2 * 0.2) / 4)
    assert multilabel_ece(logits, y, [1.0, 1.0]) == multilabel_ece(logits, y)


def test_multilabel_calibration_reports_shared_or_per_label_temperatures():
    torch.manual_seed(2)
    logits = torch.randn(2000, 2) * 3
    y = torch.bernoulli(torch.sigmoid(logits / torch.tensor([1.0, 3.0])))  # label 1 three times overconfident

    shared = calibrate_multilabel(logits, y)
    per_label = calibrate_multilabel(logits, y, per_label=True)

    assert shared["temperatures"][0] == shared["temperatures"][1] and not shared["per_label"]
    assert per_label["temperatures"] == pytest.approx([1.0, 3.0], abs=0.25)
    assert per_label["ece_after"] < shared["ece_after"] < shared["ece_before"]
    assert json.loads(json.dumps(per_label)) == per_label
