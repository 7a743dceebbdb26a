"""The compiled accelerators of hot decoders (`_*.pyx` here, built by `pip install`).

Each has a pure-Python reference in this package that stays the fallback: a name is None when
its module was not built, or when KUBEFLUME_PURE_PYTHON is set (to compare, or to rule them out).
"""

from __future__ import annotations

import importlib
import os
from typing import Any


def compiled(module: str, name: str) -> Any:
    """`name` from `kubeflume_agent.protocols.<module>`, or None (see the module docstring)."""
    if os.environ.get("KUBEFLUME_PURE_PYTHON"):
        return None
    try:
        return getattr(importlib.import_module(f"kubeflume_agent.protocols.{module}"), name)
    except ImportError:
        return None
