"""Using iscsi-helper's target helpers from a real Cinder volume service.

Cinder owns its process-wide configuration and validates ``target_helper``
against its own fixed list, which cannot name helpers Cinder lacks
(``chiscsi``, ``iet``). So the adapter never touches Cinder's options: it
adds one option of its own, ``iscsi_helper_target``, to the backend section
and hands our helpers a private configuration built from the values Cinder
already parsed (see :mod:`iscsi_helper.cinder.config`). Only
:mod:`iscsi_helper.cinder.driver` and :mod:`iscsi_helper.cinder.target`
import Cinder; the rest of the package never needs it installed.
"""
