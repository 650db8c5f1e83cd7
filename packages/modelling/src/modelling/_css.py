"""Conditional-sum-of-squares ARMA estimation on a differenced series: the cheap ranking fit.

This is the approximation R's auto.arima and statsforecast use for long series, applied here to
every candidate of the stepwise search: residuals come from two linear filters (AR part, then the
inverse MA part, conditioning on the first p + P*m values) and Levenberg-Marquardt minimises their
sum of squares. A fit costs a few hundred microseconds, against tens of milliseconds for an exact
state-space likelihood, so the search can afford the full stepwise neighbourhood.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.signal import lfilter

ROOT_MARGIN = 1.01  # as auto.arima: reject AR or MA roots this close to the unit circle
TOL = 1e-4  # ranking needs the AICc to a few digits, not the parameters to eight
MAX_NFEV_PER_PARAM = 40


@dataclass(frozen=True, order=True)
class Spec:
    """The ARMA part of a candidate; d and D are fixed before the search."""

    p: int
    q: int
    P: int
    Q: int
    constant: bool

    @property
    def n_arma(self) -> int:
        return self.p + self.q + self.P + self.Q


@dataclass(frozen=True)
class CssFit:
    spec: Spec
    params: np.ndarray  # phi (p), theta (q), Phi (P), Theta (Q), mean (if constant)
    aicc: float


def seasonal_poly(coefs: np.ndarray, m: int, sign: float) -> np.ndarray:
    poly = np.zeros(len(coefs) * m + 1)
    poly[0] = 1.0
    poly[m::m] = sign * coefs
    return poly


def split(params: np.ndarray, spec: Spec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    p, q, P, Q = spec.p, spec.q, spec.P, spec.Q
    mean = float(params[p + q + P + Q]) if spec.constant else 0.0
    return params[:p], params[p : p + q], params[p + q : p + q + P], params[p + q + P : p + q + P + Q], mean


def _lag_poly(coefs: np.ndarray, sign: float) -> np.ndarray:
    poly = np.empty(len(coefs) + 1)
    poly[0] = 1.0
    poly[1:] = sign * coefs
    return poly


def polynomials(params: np.ndarray, spec: Spec, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Full AR and MA lag polynomials, (1 - phi B)(1 - Phi B^m) and (1 + theta B)(1 + Theta B^m)."""
    phi, theta, sphi, stheta = split(params, spec)[:4]
    ar = _lag_poly(phi, -1.0)
    if spec.P:
        ar = np.convolve(ar, seasonal_poly(sphi, m, -1.0))
    ma = _lag_poly(theta, 1.0)
    if spec.Q:
        ma = np.convolve(ma, seasonal_poly(stheta, m, 1.0))
    return ar, ma


def residuals(params: np.ndarray, w: np.ndarray, spec: Spec, m: int) -> np.ndarray:
    ar, ma = polynomials(params, spec, m)
    x = w - split(params, spec)[4] if spec.constant else w
    # The AR part is a finite filter, valid from the (p + P*m)-th value on: a plain convolution.
    u = np.convolve(x, ar)[len(ar) - 1 : len(x)] if len(ar) > 1 else x
    e = lfilter([1.0], ma, u) if len(ma) > 1 else u
    if not np.isfinite(e).all():
        # An explosive MA filter overflows; a huge finite value steers the optimiser back instead of failing.
        e = np.nan_to_num(e, nan=1e12, posinf=1e12, neginf=-1e12)
    return e


def _roots_ok(coefs: np.ndarray, sign: float) -> bool:
    if len(coefs) == 0 or not np.any(coefs):
        return True
    poly = np.r_[1.0, sign * coefs]
    roots = np.roots(poly[::-1])
    return bool(np.all(np.abs(roots) > ROOT_MARGIN))


def admissible(params: np.ndarray, spec: Spec) -> bool:
    phi, theta, sphi, stheta, _ = split(params, spec)
    return all(_roots_ok(c, s) for c, s in ((phi, -1.0), (theta, 1.0), (sphi, -1.0), (stheta, 1.0))) and bool(
        np.all(np.isfinite(params))
    )


def fit(w: np.ndarray, spec: Spec, m: int, start: np.ndarray | None = None) -> CssFit | None:
    """CSS fit and its AICc, or None when the model is too big for the data or not admissible."""
    n = len(w)
    ncond = spec.p + spec.P * m
    k = spec.n_arma + int(spec.constant) + 1  # + innovation variance
    if n - ncond < max(k + 2, 3) or n - k - 1 <= 0:
        return None
    if start is None:
        start = np.zeros(spec.n_arma + int(spec.constant))
        if spec.constant:
            start[-1] = w.mean()
    if len(start) == 0:
        e = residuals(start, w, spec, m)
        params = start
    else:
        method = "lm" if n - ncond >= len(start) else "trf"
        solution = least_squares(
            residuals,
            start,
            args=(w, spec, m),
            method=method,
            ftol=TOL,
            xtol=TOL,
            max_nfev=MAX_NFEV_PER_PARAM * len(start),
        )
        params, e = solution.x, solution.fun
    if not admissible(params, spec):
        return None
    sigma2 = float(np.mean(e**2))
    if not np.isfinite(sigma2) or sigma2 <= 0:
        sigma2 = np.finfo(float).tiny
    # As R's arima(method = "CSS"): the likelihood counts every differenced observation.
    loglik = -0.5 * n * (np.log(2 * np.pi * sigma2) + 1.0)
    aicc = -2.0 * loglik + 2.0 * k + 2.0 * k * (k + 1) / (n - k - 1)
    return CssFit(spec, params, float(aicc))
