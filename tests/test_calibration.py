"""One calibration and one decision rule: the trainer, site adaptation and the app decide alike."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from desktop.core.calibration import SITE_TEMPERATURES, fit_temperature, nll, softmax, temperature_grid
from desktop.core.inference.decision import decide, make_calls
from trainer import calibration as trainer_calibration


def _probabilities(seed: int, n: int, classes: int) -> np.ndarray:
    return softmax(np.random.default_rng(seed).normal(0, 2, (n, classes)))


def test_the_trainer_calls_what_the_app_calls_for_two_and_eight_classes():
    for classes, threshold in ((2, 0.37), (2, 0.5), (8, 0.5)):
        probs = _probabilities(classes, 500, classes)
        calibration = trainer_calibration.Calibration(1.0, threshold, 0.0, 0.0, [])
        keys = [f"c{i}" for i in range(classes)]
        info = SimpleNamespace(class_keys=keys, review_threshold=0.0, ood_threshold=None, decision_threshold=threshold,
                               review_band=None, review_classes=())
        sources = [SimpleNamespace(relative=f"{i}.png", size=1, mtime=0.0, position=None) for i in range(len(probs))]
        app = [keys.index(c.ai_class) for c in make_calls(info, sources, probs, None)]
        np.testing.assert_array_equal(calibration.calls(probs), app)
        np.testing.assert_array_equal(calibration.calls(probs), decide(probs, None, 0.0, None, threshold).top)


def test_a_two_class_threshold_is_not_the_top_class():
    probs = np.array([[0.6, 0.4], [0.7, 0.3]])
    assert list(trainer_calibration.decide(probs, 0.35)) == [1, 0]


def test_site_temperature_is_the_best_of_its_grid_and_the_trainers_is_refined_near_its_own():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, 400)
    logits = rng.normal(0, 1, (400, 4)) + 3 * np.eye(4)[labels]
    site = fit_temperature(logits, labels, SITE_TEMPERATURES, refine=False)
    assert site == min(temperature_grid(*SITE_TEMPERATURES), key=lambda t: nll(logits, labels, t))
    model = trainer_calibration.fit_temperature(logits, labels)
    assert nll(logits, labels, model) <= nll(logits, labels, site) + 1e-12
