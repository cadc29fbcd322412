"""The real kernel: thin, typed wrappers around the system calls pidns needs.

Python 3.12 added ``os.unshare`` and ``os.setns``; on 3.11 they are reached through
ctypes. Everything that fails raises ``OSError`` with the kernel's errno.
"""
