"""Hyperparameter schedules shared over equal contiguous windows (Micaelli & Storkey 2021)."""


def window_index(step: int, total_steps: int, n_windows: int) -> int:
    """Window used at ``step`` of ``total_steps``: ``floor(n_windows * step / total_steps)``.

    Steps past the horizon keep the last window, so a run that is trained longer than planned
    (a scheduler's ``max_t`` above the configured horizon) stays well defined.
    """
    if n_windows < 1 or total_steps < 1:
        raise ValueError(f"n_windows and total_steps must be >= 1, got {n_windows}, {total_steps}")
    return min(n_windows * step // total_steps, n_windows - 1)
