"""Tests of calibration (tests/ mirrors the packages)."""
