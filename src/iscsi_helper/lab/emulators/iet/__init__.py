"""Emulator of IET's admin interface: an ``ietadm`` command and fake ``/proc/net/iet`` files.

IET (kernel module plus ietd) cannot be installed on the project's hosts,
so the IET helper is tested against this stand-in. It is put on PATH as
``ietadm`` by :func:`iscsi_helper.lab.emulators.shims.install_shims`; see
``docs/emulators/iet.md`` for what is emulated and every assumption made.
"""
