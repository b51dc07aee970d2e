"""Exports of zoo models in other interfaces (Kyutai's CASA remote code)."""
