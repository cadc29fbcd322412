"""The one renderer: a picture of pid namespaces and processes, drawn as text, JSON or graphviz.

It is fed by two sources through the same value types (``pidns.render.view``): a snapshot
of the running system (``pidns.render.proc_view``) and the model's state (an adapter in the
model's layer). Nothing here reads /proc or knows about the model.

- ``view``: the input types, ``SystemView``, ``NamespaceView``, ``ProcessView``.
- ``text``: the ``pidns ls`` table and the ``pidns tree`` tree.
- ``data``: the documented JSON layouts (docs/introspection.md).
- ``graphviz``: dot source with one nested cluster per namespace; SVG and PNG through ``dot``.
"""
