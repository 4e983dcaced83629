"""The operator dashboard: a Textual app that reads through `flow45.store` and changes only through it.

`flow45 tui` calls `tui.app.run_dashboard(actor)`.
"""
