"""Schedules: the store, the engine that fires them, and `/billing schedule`."""
