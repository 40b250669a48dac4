"""Tests of evaluation (tests/ mirrors the packages)."""
