"""pam_pidns: a PAM session module that gives each login a pid namespace of its own.

The seed (unshare(CLONE_NEWPID), Linux 3.8) chose its semantics so that it "is usable from
pam modules": the namespace applies to the caller's *children*, and a login program forks
exactly once after opening the session, so the shell becomes pid 1 of the new namespace and
every process of the session dies with it (kernel/pid_namespace.c:zap_pid_ns_processes).

- ``pam_pidns.py``: the file ``pam_python.so`` loads (it finds this package by itself).
- ``handlers``: the PAM entry points, adapting pam_python's handle to ``session``.
- ``session``: open and close a login's namespaces, with rollback (no PAM here).
- ``procfs``: a /proc for the namespace-to-be (procfs ``pidns=`` and pidfd ioctls).
- ``options``: the module's arguments on the PAM line, and who is selected.
- ``log``: syslog lines in PAM's own format.
- ``libpam``: the application side of PAM (ctypes to libpam.so.0), for ``pidns login-test``.

Runs under the system python3 that pam_python embeds: standard library only. docs/pam.md
says how to enable it.
"""
