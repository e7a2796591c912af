"""One exception type for every user-facing failure, so entry points can print one paragraph and exit non-zero."""

from __future__ import annotations

from collections.abc import Iterable


class RlgraftError(Exception):
    """A problem the user can fix: `problem`, what was found, and how to fix it."""

    exit_code = 2

    def __init__(self, problem: str, *, found: str | None = None, fix: str | None = None):
        self.problem, self.found, self.fix = problem, found, fix
        super().__init__(self.paragraph())

    def paragraph(self) -> str:
        parts = [self.problem.rstrip(".") + "."]
        if self.found:
            parts.append(self.found.rstrip(".") + ".")
        if self.fix:
            parts.append("Fix: " + self.fix.rstrip(".") + ".")
        return " ".join(parts)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A short 'did you mean' hint, or '' when nothing is close."""
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
