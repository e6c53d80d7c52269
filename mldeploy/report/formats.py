"""How figures read in every report: one formatter per kind of figure, "n/a" when there is no evidence."""

from __future__ import annotations


def ms(seconds: float | None) -> str:
    return "n/a" if seconds is None else f"{seconds * 1000:.1f}"


def share(value: float | None) -> str:
    """A share from 0 to 1 as a percentage."""
    return "n/a" if value is None else f"{value * 100:.1f}%"


def score(value: float | None) -> str:
    """Precision, recall, F1, IoU: three decimals."""
    return "n/a" if value is None else f"{value:.3f}"


def interval(estimate) -> str:
    """A latency ratio with its 90% interval: ``1.52x (1.31-1.77)``."""
    if estimate is None:
        return "n/a"
    return f"{estimate.value:.2f}x ({estimate.low:.2f}-{estimate.high:.2f})"


def setting(value) -> str:
    """A run's setting as a person writes it: ``5, 25, 50, 100`` not ``[5.0, 25.0, 50.0, 100.0]``, ``yes`` not ``True``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(setting(v) for v in value)
    return str(value)
