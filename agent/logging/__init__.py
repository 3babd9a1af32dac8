"""Structured logging: one configuration, events with bound deployment fields."""
