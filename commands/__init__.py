"""Provider clients and command handlers. Knows nothing about Slack."""
