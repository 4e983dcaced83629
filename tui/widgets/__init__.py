"""Reusable widgets: the DAG view of a run, progress bars and state marks, the ledger, typed forms."""
