"""Blocks shared by several models (each lives here once)."""
