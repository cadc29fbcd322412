"""Shared vocabulary of the model and the real backend: errnos, clone flags, signals,
exit statuses, syscall numbers and wait flags (``abi``), the wire rules.

Nothing here performs a system call; both `pidns.model` and `pidns.linux` import it.
"""
