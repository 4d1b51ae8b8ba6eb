"""The Slack adapter: the Bolt app and its listeners, the web server, input limits,
the outbox, Block Kit, the App Home and `check`'s questions to Slack."""
