"""Tests of pages (tests/ mirrors the packages)."""
