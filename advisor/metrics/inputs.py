"""Validated float64 feature arrays and the row blocks every metric computes in."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: float64 entries per block of distances/kernel values (64 MiB); never changes a result.
BLOCK_ELEMENTS = 1 << 23
#: Largest |feature value| the metrics accept. KID cubes products of features, which leaves
#: float64's range near 1e51; every float32 value (at most 3.4e38) passes, and real
#: extractors' features stay below 1e3.
MAX_ABS_FEATURE = 1e50


def as_features(array: np.ndarray, name: str) -> np.ndarray:
    """Validate one feature array and return it as C-contiguous float64 ``[N, D]``."""
    arr = np.asarray(array)
    if arr.ndim != 2:
        raise ValueError(f"{name} features must be a 2-D array [N, D], got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} features must be real numbers, got dtype {arr.dtype}")
    if arr.shape[0] < 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} features need at least 2 rows and 1 column, got {arr.shape}")
    out = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.isfinite(out).all():
        row = int(np.flatnonzero(~np.isfinite(out).all(axis=1))[0])
        raise ValueError(f"{name} features contain NaN or inf (first at row {row})")
    largest = float(np.abs(out).max(initial=0.0))
    if largest > MAX_ABS_FEATURE:
        raise ValueError(
            f"{name} features reach {largest:.3g}, beyond the {MAX_ABS_FEATURE:.0e} the metrics "
            "can square and cube in float64; rescale the features"
        )
    return out


def as_pair(reference: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = as_features(reference, "reference"), as_features(candidate, "candidate")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"reference and candidate features differ in dimension: {x.shape[1]} vs {y.shape[1]}"
        )
    return x, y


def check_k(k: int, n: int, name: str, what: str) -> None:
    if k < 1:
        raise ValueError(f"{what} needs k >= 1, got k={k}")
    if k >= n:
        raise ValueError(
            f"{what} with k={k} needs more than {k} {name} samples, got {n}; use a smaller k"
        )


def row_slices(n_rows: int, n_cols: int, block_rows: int | None) -> Iterator[slice]:
    rows = block_rows or max(64, BLOCK_ELEMENTS // max(n_cols, 1))
    for start in range(0, n_rows, rows):
        yield slice(start, min(start + rows, n_rows))
