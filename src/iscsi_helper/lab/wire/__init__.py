"""Pure-Python iSCSI target: the data path behind the emulated chiscsi/IET admin tools.

``model`` describes what to serve, ``control.WireService`` publishes it to a
daemon (``python -m iscsi_helper.lab.wire``) that speaks iSCSI to real initiators.
"""

from iscsi_helper.lab.wire.model import WireLun, WireTarget

__all__ = ["WireLun", "WireTarget"]
