"""Node functions, grouped by concern: `(state, runtime) -> partial update`."""
