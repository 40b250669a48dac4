"""Tests of data_adapters (tests/ mirrors the packages)."""
