"""Driver-wide settings: ``-G key=value``, ``-g``, and a ``global:`` block in the ``-f`` file.

Sources (under src/chiscsi/): private/klib/control/iscsi_control_cmd.c 69-296
(``iscsi_control_settings_set``: the known keys, their values and messages;
most refusals still return success, e.g. ``iscsi_login_complete_time`` out
of range), private/klib/common/iscsi_global.c 14-35 (defaults), 62-112
(``-g`` display), private/klib/include/iscsi_control_api.h 17-196 (value
names; ``iscsi_offload_mode=TOE`` is refused although the guide lists it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from iscsi_helper.lab.emulators.chiscsi.kernel.cstr import as_int, lower, simple_strtoul
from iscsi_helper.lab.emulators.chiscsi.kernel.ebuf import Ebuf, KernelError

VENDOR_ID_DEFAULT = "CHISCSI"  # includes/common/iscsi_defs.h 48
VENDOR_ID_MAXLEN = 8
ALIAS_LEN_MAX = 255
MSG_DEBUG_BIT = 3  # includes/common/iscsi_debug.h 7-12


@dataclass
class Settings:
    offload_mode: str = "ULP"  # ISCSI_OFFLOAD_MODE_DEFAULT (includes/common/iscsi_offload.h 16)
    target_vendor_id: str = VENDOR_ID_DEFAULT
    chelsio_ini_idstr: str = "cxgb4i"
    login_complete_time: int = 300
    perf_params: int = 0
    worker_policy: str = "QSET"
    ha_mode: int = 0
    auth_order: str = "CHAP"
    acl_order: str = "CONFIG"
    msg_level: int = 0
    msg_debug_level: int = 0
    disc_auth_method: str = "None"
    disc_auth_chap_policy: str = "Oneway"
    disc_auth_chap_target: str = ""
    disc_auth_chap_initiator: str = ""
    test_mode: int = 0

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Settings:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)  # type: ignore[arg-type]


def display(settings: Settings) -> str:
    """``iscsi_global_settings_display``."""
    out = f"\tiscsi_auth_order={settings.auth_order}\n"
    out += f"\tiscsi_acl_order={settings.acl_order}\n"
    if settings.target_vendor_id != VENDOR_ID_DEFAULT:
        out += f"\tiscsi_target_vendor_id={settings.target_vendor_id}\n"
    out += f"\tiscsi_login_complete_time={settings.login_complete_time}\n"
    out += f"\tDISC_AuthMethod={settings.disc_auth_method}\n"
    out += f"\tDISC_Auth_CHAP_Policy={settings.disc_auth_chap_policy}\n"
    out += f"\tDISC_Auth_CHAP_Target={settings.disc_auth_chap_target}\n"
    out += f"\tDISC_Auth_CHAP_Initiator={settings.disc_auth_chap_initiator}\n"
    out += f"\tiscsi_chelsio_ini_idstr={settings.chelsio_ini_idstr}\n"
    return out


def _choice(value: str, allowed: tuple[str, ...], message: str, ebuf: Ebuf) -> str:
    if value in allowed:
        return value
    ebuf.put(message)
    raise KernelError("setting")


def apply(settings: Settings, request: str, ebuf: Ebuf) -> None:
    """``iscsi_control_settings_set`` for one ``key=value``; raises when the ioctl fails."""
    if not request:
        ebuf.put("Empty request buffer.\n")
        raise KernelError("empty")
    key, eq, val = request.partition("=")
    if not eq:
        ebuf.put(f"Invalid key=value pair format {request}\n")
        raise KernelError("format")
    if key == "iscsi_chelsio_ini_idstr":
        if len(val) > ALIAS_LEN_MAX:
            ebuf.put(f"{val}: length {len(val)} > max. {ALIAS_LEN_MAX}.")
            raise KernelError("length")
        settings.chelsio_ini_idstr = val
    elif key == "iscsi_target_vendor_id":
        if len(val) > VENDOR_ID_MAXLEN:
            ebuf.put(f"{val}: length {len(val)} > max. {VENDOR_ID_MAXLEN}.")
            raise KernelError("length")
        settings.target_vendor_id = val
    elif key == "iscsi_offload_mode":
        settings.offload_mode = _choice(
            val, ("AUTO", "ULP", "CRC"), f"Invalid {val}, must be AUTO/ULP.\n", ebuf
        )
    elif key == "iscsi_login_complete_time":
        number = as_int(simple_strtoul(val, 0)[0])
        if number < 0 or number > 3600:
            ebuf.put(f"Invalid {val}, must be 0 ~ 3600.\n")
            if number < 0:
                raise KernelError("range")
        else:
            settings.login_complete_time = number
    elif key == "iscsi_perf_params":
        number = as_int(simple_strtoul(val, 0)[0])
        if number < 0:
            ebuf.put(f"Invalid {val}, must be a hex integar.\n")
            raise KernelError("range")
        settings.perf_params = number & 0xFF
    elif key == "iscsi_worker_policy":
        settings.worker_policy = _choice(val, ("QSET", "RR"), f"Invalid {val}, must be QSET/RR.\n", ebuf)
    elif key == "iscsi_HA_mode":
        low = lower(val)
        if low not in ("yes", "no"):
            ebuf.put(f"Invalid {low}, must be Yes/No.\n")
            raise KernelError("boolean")
        settings.ha_mode = 1 if low == "yes" else 0
    elif key == "iscsi_auth_order":
        settings.auth_order = _choice(val, ("ACL", "CHAP"), f"Invalid {val}, must be ACL/CHAP.\n", ebuf)
    elif key == "iscsi_acl_order":
        settings.acl_order = _choice(val, ("CONFIG", "ISNS"), f"Invalid {val}, must be CONFIG/ISNS.\n", ebuf)
    elif key == "iscsi_verbose_level":
        level, _, debug = val.partition(",")
        settings.msg_level = simple_strtoul(level, 0)[0] & 0xFFFFFFFF
        if _:
            settings.msg_debug_level = simple_strtoul(debug, 0)[0]
            if settings.msg_debug_level:
                settings.msg_level |= 1 << MSG_DEBUG_BIT
        ebuf.put(f"iscsi_verbose_level=0x{settings.msg_level:x},0x{settings.msg_debug_level:x}\n")
    elif key == "DISC_AuthMethod":
        settings.disc_auth_method = _choice(
            val, ("None", "CHAP"), f"Invalid {val}, must be None/CHAP.\n", ebuf
        )
    elif key == "DISC_Auth_CHAP_Policy":
        settings.disc_auth_chap_policy = _choice(
            val, ("Oneway", "Mutual"), f"Invalid {val}, must be Oneway/Mutual.\n", ebuf
        )
    elif key == "DISC_Auth_CHAP_Target":
        settings.disc_auth_chap_target = val
    elif key == "DISC_Auth_CHAP_Initiator":
        settings.disc_auth_chap_initiator = val
    elif key == "iscsi_test_mode":
        value = simple_strtoul(val, 0)[0] & 0xFFFFFFFF
        ebuf.put(f"iscsi_test_mode 0x{settings.test_mode:x} -> 0x{value:x}.\n")
        settings.test_mode = value
    else:
        ebuf.put(f"Unknown variable {key}.\n")
        raise KernelError("unknown")
