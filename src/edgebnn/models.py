"""Model builders and the ELL gallery catalog (``edgebnn.models.d_series`` et al.)."""

from __future__ import annotations

from edgebnn.engine.zoo import HEADLINE, d_series, parse_name

__all__ = ["HEADLINE", "d_series", "parse_name"]
