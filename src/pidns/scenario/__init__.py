"""The scenario language (docs/scenario-language.md): parse, run on a backend, compare.

``ast`` holds the step and value types every backend shares; ``parser`` reads .pidns
files; ``backend`` is the interface; ``model_backend`` and ``real`` implement it.
"""
