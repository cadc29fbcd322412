"""Shared fixtures. Tests that need the real kernel's namespaces are marked ``real``."""

from __future__ import annotations
