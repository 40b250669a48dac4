"""Tests of workspace (tests/ mirrors the packages)."""
