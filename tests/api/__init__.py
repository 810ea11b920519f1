"""Tests of the HTTP edge: the order of the submit checks, rate limits, configured providers."""
