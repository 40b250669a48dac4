"""Tests of explainers (tests/ mirrors the packages)."""
