"""Temperature scaling on synthetic logits with a known temperature."""

from __future__ import annotations

import numpy as np
import pytest

from ept_studio.core.temperature import (
    MIN_CALIBRATION_IMAGES,
    Calibration,
    Uncalibrated,
    apply_temperature,
    calibration_error,
    fit_calibration,
)


def _overconfident(n: int, true_temperature: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z); the model reports z * T (over-confident when T > 1)."""
    rng = np.random.default_rng(seed)
    calibrated = rng.normal(0.0, 1.5, size=(n, 4))
    probabilities = apply_temperature(calibrated, 1.0).astype(np.float64)
    cumulative = probabilities.cumsum(axis=1)
    labels = (rng.random((n, 1)) > cumulative).sum(axis=1).clip(0, 3)
    return calibrated * true_temperature, labels


def test_fitted_temperature_recovers_the_known_one_and_lowers_the_ece() -> None:
    logits, labels = _overconfident(4000, 2.5, seed=0)
    result = fit_calibration(logits, labels, source="synthetic held-out images")
    assert isinstance(result, Calibration)
    assert result.temperature == pytest.approx(2.5, rel=0.1)
    assert result.images == 4000
    assert result.ece_after < result.ece_before
    assert result.ece_before > 0.1
    assert result.ece_after < 0.03
    assert calibration_error(apply_temperature(logits, result.temperature), labels) == (
        pytest.approx(result.ece_after)
    )


def test_temperature_never_changes_the_decision() -> None:
    logits, _ = _overconfident(50, 3.0, seed=1)
    for temperature in (0.05, 0.7, 3.0, 20.0):
        calibrated = apply_temperature(logits, temperature)
        assert (calibrated.argmax(axis=1) == logits.argmax(axis=1)).all()
        np.testing.assert_allclose(calibrated.sum(axis=1), 1.0, atol=1e-6)
        multi = apply_temperature(logits, temperature, "multi")
        assert ((multi > 0.5) == (logits > 0)).all()
    assert apply_temperature(logits, 1.0).dtype == np.float32


def test_multi_label_temperature_recovers_the_known_one() -> None:
    rng = np.random.default_rng(2)
    calibrated = rng.normal(0.0, 2.0, size=(3000, 3))
    targets = (rng.random(calibrated.shape) < apply_temperature(calibrated, 1.0, "multi")).astype(
        int
    )
    result = fit_calibration(calibrated * 2.0, targets, source="synthetic", label_mode="multi")
    assert isinstance(result, Calibration)
    assert result.temperature == pytest.approx(2.0, rel=0.1)


def test_too_few_images_or_one_class_gives_the_reason() -> None:
    logits, labels = _overconfident(6, 2.0, seed=3)
    result = fit_calibration(logits, labels, source="held-out support images")
    assert isinstance(result, Uncalibrated)
    assert result.reason == (
        "scores are uncalibrated: only 6 held-out images; "
        f"at least {MIN_CALIBRATION_IMAGES} are needed"
    )
    one_class = fit_calibration(np.zeros((12, 3)), np.ones(12, int), source="held out")
    assert isinstance(one_class, Uncalibrated)
    assert "all of one class" in one_class.reason


def test_calibration_block_round_trips_and_refuses_nonsense() -> None:
    block = Calibration(
        temperature=1.7, images=20, source="held out", ece_before=0.2, ece_after=0.05
    )
    assert Calibration.from_dict(block.to_dict()) == block
    for bad in ({**block.to_dict(), "temperature": -1.0}, {"temperature": 1.0}, [1.0]):
        with pytest.raises(ValueError, match=r"must|missing|JSON|expected"):
            Calibration.from_dict(bad)


def test_a_fit_that_runs_to_a_bound_is_no_calibration() -> None:
    """Every calibration image right: the likelihood rises as the scores sharpen, so the fit would
    stop at the smallest temperature; the images cannot say how confident to be."""
    rng = np.random.default_rng(5)
    targets = np.arange(20) % 2
    logits = rng.normal(size=(20, 2))
    logits[np.arange(20), targets] += 3.0
    assert np.all(logits.argmax(axis=1) == targets)
    fitted = fit_calibration(logits, targets, source="held-out support images")
    assert isinstance(fitted, Uncalibrated)
    assert fitted.reason == (
        "scores are uncalibrated: the model scored all 20 held-out images right, so they cannot "
        "show how confident it should be"
    )
    assert fitted.images == 20
    noise = fit_calibration(-5.0 * np.eye(2)[targets], targets, source="held out")
    assert isinstance(noise, Uncalibrated)
    assert "no better than chance" in noise.reason


def test_the_prior_keeps_few_images_nearer_1_and_lets_many_decide() -> None:
    """Maximum a posteriori: on 20 images the prior pulls log T part of the way to 0; on 4000 the
    images decide (within 1 % of the plain likelihood's T)."""
    from ept_studio.core.temperature import LOG_TEMPERATURE_PRIOR_SD, fit_temperature

    few_logits, few_labels = _overconfident(20, 4.0, seed=3)
    plain = fit_temperature(few_logits, few_labels, prior_sd=None)
    shrunk = fit_temperature(few_logits, few_labels)
    assert 1.0 < shrunk < plain
    assert fit_temperature(few_logits, few_labels, prior_sd=0.25) < shrunk
    assert fit_temperature(few_logits, few_labels, prior_sd=100.0) == pytest.approx(plain, rel=1e-3)
    fitted = fit_calibration(few_logits, few_labels, source="held out")
    assert isinstance(fitted, Calibration)
    assert fitted.temperature == pytest.approx(shrunk, rel=1e-6)
    many_logits, many_labels = _overconfident(4000, 4.0, seed=3)
    assert fit_temperature(many_logits, many_labels) == pytest.approx(
        fit_temperature(many_logits, many_labels, prior_sd=None), rel=0.01
    )
    assert LOG_TEMPERATURE_PRIOR_SD > 0
