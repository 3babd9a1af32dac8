"""Lifecycle events: which exist, which revision they use, and running their scripts."""
