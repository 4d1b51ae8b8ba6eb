"""The Slack runtime: app, dispatch, approvals, replies, storage, scheduler, console."""

__version__ = "0.1.0"
