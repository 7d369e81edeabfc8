"""The lab: what proves the product, and is not the product.

Everything under ``iscsi_helper.lab`` stands in for what cannot run on the
project's machines or drives the product from outside: emulators of
chiscsi's ``iscsictl`` and IET's ``ietadm`` (``emulators``), the embedded
iSCSI target that serves emulated targets on the wire (``wire``), a wrapper
around the libiscsi initiator (``initiator``), the demo (``demo``) and the
rig the tests and benchmarks stand on (``rig``: free ports, emulators in
process, a private tgtd).

The wall: the lab may import the product; no product module imports the
lab. The lab reaches the command line only through the
``iscsi_helper.cli_commands`` entry point (see ``commands``).
"""
