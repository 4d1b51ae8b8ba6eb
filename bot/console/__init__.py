"""The terminal adapter: the console, its screen, forms and Tab completion.

entry       `billing-bot console`: flags, files beside the database, logging, run_console
app         the Console: a line, a button, `:as`, `:sandbox`, commands started and cancelled
prompt      the interactive prompt loop (and a pipe read line by line), the masked history
forms       a command's form, asked field by field
surface     ConsoleSurface: where one command's answers go
screen      styles, the screen, the transcript written on it, the log handler
tasks       each command's task group, so Ctrl-C stops all it started; SIGINT routing
services    the protocols of what the console uses of the bot (Intake, Providers)
completion  Tab completion from the declarations
(Slack mrkdwn read as styled text is `bot.mrkdwn`, shared with the audit log's plain details.)
"""
