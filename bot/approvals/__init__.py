"""Approvals: the state machine, the flow people meet, and the policies."""
