"""Tests of the scheduler layer."""
