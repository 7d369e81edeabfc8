"""iscsi-helper: export block volumes over iSCSI through pluggable target helpers."""

__version__ = "0.1.0"
