"""Shared vocabulary of the model and the real backend: errnos, clone flags, signals.

Nothing here performs a system call; both `pidns.model` and `pidns.linux` import it.
"""
