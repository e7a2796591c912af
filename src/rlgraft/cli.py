"""What every entry point does with a user error: one paragraph on stderr, a non-zero exit."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from rlgraft.errors import RlgraftError


def guarded(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except RlgraftError as err:
        print(f"rlgraft: error: {err.paragraph()}", file=sys.stderr)
        sys.exit(err.exit_code)
