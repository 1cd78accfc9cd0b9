"""Every failure a user can fix. `vslm.cli.main` prints one as `error: ...` and exits 1; nothing here imports vslm."""

from __future__ import annotations


class VslmError(Exception):
    """A user-facing failure: one line naming the file, line, flag or key, and what to do."""


class DataError(VslmError):
    """A dataset, document or data file problem."""


class RecipeError(VslmError):
    """A recipe, matrix, flag or run-setup problem."""


class EndpointError(VslmError):
    """An OpenAI-compatible HTTP endpoint failed (unreachable, wrong model, failed requests)."""


class ServerError(VslmError):
    """A server vslm started did not come up (port taken, exited, not ready in time)."""
