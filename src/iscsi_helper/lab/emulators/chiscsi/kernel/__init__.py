"""The emulated chiscsi kernel module: what the control device does with a request.

One module per concern of the source's klib: key tables (keys), values
(addr, portals, luns, acl, chap), the node and its display (model), node
operations (node), driver settings (settings), and the C semantics the
parsers rely on (cstr, cbuf, ebuf).
"""
