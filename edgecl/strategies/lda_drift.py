"""The corrections of streaming LDA's kept precision for the shrinkage's growth, and their
error bounds: ``(S + γ I)⁻¹`` from a factorisation for ``γ₀ ≠ γ``, explicitly
(:func:`drift`, :class:`~edgecl.strategies.lda_update.KeptPrecision`) and in the space of
the scatter's terms (:func:`row_drift`, :class:`~edgecl.strategies.lda_rows.RowPrecision`).
"""

from __future__ import annotations

import numpy as np

ALPHA = 3.0 - 2.0 * 2.0**0.5


def drift(rho: float) -> tuple[float, float, float]:
    """For ``ρ = δ b``: ``β`` and ``δ'/δ`` of ``β (P − δ' P²)``, and its relative error.

    On ``x = p/b ∈ (0, 1]`` the exact eigenvalue is ``p/(1 + δ p)``; the relative error
    ``β (1 − δ' p)(1 + δ p) − 1`` is a quadratic in ``x`` with leading term ``−β ρ²x²/(1 +
    ρ)``, least in its largest value when it equioscillates at ``x = 0, ½, 1`` (Chebyshev):
    ``δ' = δ/(1 + ρ)`` and ``β = 8(1 + ρ)/(8(1 + ρ) + ρ²)``, error ``ρ²/(8(1 + ρ) + ρ²)``.

    >>> beta, shrink, err = drift(0.09)
    >>> p = np.linspace(1e-6, 1.0, 1001)  # b = 1, δ = ρ
    >>> exact, used = p / (1 + 0.09 * p), beta * (p - 0.09 * shrink * p**2)
    >>> bool(abs(float(np.abs(used / exact - 1).max()) - err) < 1e-9)
    True
    """
    if rho <= -0.5:  # far outside any tolerance: the caller factorises again
        return 1.0, 1.0, float("inf")
    denom = 8.0 * (1.0 + rho) + rho * rho
    return 8.0 * (1.0 + rho) / denom, 1.0 / (1.0 + rho), rho * rho / denom


def below(tolerance: float) -> float:
    """The ``ρ < 0`` at which :func:`drift`'s error reaches ``tolerance`` (its negative root):
    a factorisation for a ``γ₀`` that far ahead of ``γ`` spans growth on both sides.

    >>> round(drift(below(1e-3))[2], 12)
    0.001
    """
    tol = min(tolerance, 0.5)
    a, b, c = 1.0 - tol, -8.0 * tol, -8.0 * tol
    return float((-b - np.sqrt(b * b - 4.0 * a * c)) / (2.0 * a))


def above(tolerance: float) -> float:
    """The ``ρ > 0`` at which :func:`drift`'s error reaches ``tolerance`` (its positive
    root): past it the kept precision is replaced.

    >>> round(drift(above(1e-3))[2], 12)
    0.001
    """
    tol = min(tolerance, 0.5)
    a, b, c = 1.0 - tol, -8.0 * tol, -8.0 * tol
    return float((-b + np.sqrt(b * b - 4.0 * a * c)) / (2.0 * a))


def spread(x_max: float) -> float:
    """The ``q`` of :func:`row_drift` when every nonzero eigenvalue ``s`` of ``G`` has
    ``x = γ₀/(s + γ₀) ≤ x_max`` (``x = 1``, the null space, has no error whatever ``q``).

    With ``a = ρ(κ − 1) < 0`` and ``c = κ ρ²`` the error's numerator ``(1 − x)(a + c x)``
    rises up to ``x = ½ − a/(2c) ≥ ½``, so for ``x_max ≤ ½`` its extremes on ``[0, x_max]``
    are its ends; they balance (``−a`` equal to the value at ``x_max``) at ``a = −q c``,
    ``q = x_max(1 − x_max)/(2 − x_max)``, below ``α`` (the whole interval's ``q``).

    >>> round(spread(1.0), 4), round(spread(0.5), 4), round(spread(0.02), 5)
    (0.1716, 0.1667, 0.0099)
    """
    return x_max * (1.0 - x_max) / (2.0 - x_max) if x_max <= 0.5 else ALPHA


def row_drift(rho: float, q: float = ALPHA) -> tuple[float, float]:
    """For ``ρ = δ/γ₀``: ``δ'/δ`` and the relative error of ``M − δ' M²``.

    On an eigenvalue ``s`` of ``G``, with ``x = γ₀/(s + γ₀) ∈ (0, 1]`` and ``δ' = κ δ``, the
    precision's relative error is ``(1 − x)(ρ(κ − 1) + κ ρ² x)/(1 + ρ)``: zero on the null
    space (``x = 1``), and least in its largest value when its value at ``x = 0`` is
    ``−q`` times its ``x²`` coefficient: over all of ``(0, 1]`` with ``q = α = 3 − 2√2``
    (so that it equals the interior extreme), and with the smaller :func:`spread` ``q`` when
    no nonzero ``s`` is near ``γ₀``: ``κ = 1/(1 + q ρ)``, error ``q ρ²/((1 + q ρ)(1 + ρ))``.

    >>> x = np.linspace(0.0, 1.0, 100001)
    >>> for q, x_max in ((ALPHA, 1.0), (spread(0.05), 0.05)):
    ...     shrink, err = row_drift(0.1, q)
    ...     near = x[(x <= x_max) | (x == 1.0)]
    ...     used = (1 - near) * (0.1 * (shrink - 1) + shrink * 0.01 * near) / 1.1
    ...     print(bool(abs(float(np.abs(used).max()) - err) < 1e-9))
    True
    True
    """
    if rho <= -0.5:  # far outside any tolerance: the caller factorises again
        return 1.0, float("inf")
    return 1.0 / (1.0 + q * rho), q * rho * rho / ((1.0 + q * rho) * (1.0 + rho))


def below_rows(tolerance: float, q: float = ALPHA) -> float:
    """The ``ρ < 0`` where :func:`row_drift`'s error reaches ``tolerance`` (no further than
    ``−0.4``): factorising for a ``γ₀`` that far ahead spans growth on both sides.

    >>> [round(row_drift(below_rows(1e-3, q), q)[1], 12) for q in (ALPHA, 0.01)]
    [0.001, 0.001]
    """
    tol = min(tolerance, 0.1)
    a, b, c = q * (1.0 - tol), -tol * (1.0 + q), -tol
    return max(float((-b - np.sqrt(b * b - 4.0 * a * c)) / (2.0 * a)), -0.4)
