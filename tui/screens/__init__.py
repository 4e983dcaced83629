"""The dashboard's screens: runs, one run, one instance, the human-task inbox and form, help, modals."""
