"""``target=<name>[,<name>...]|ALL`` arguments (``str_to_kv_pair``, ``str_list_parse_kv_pair``).

Source: src/chiscsi/private/ulib/iscsictl_cmd.c 142-334. The key is compared
lower-cased against initiator/target/portal/lun; the value is split on ','
(no white space trimming); ``ALL`` (upper case only) anywhere makes the whole
list ALL; an empty value is refused where a name is required. Names are
passed on exactly as given: the kernel compares them byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass

from iscsi_helper.lab.emulators.chiscsi.kernel.cstr import lower

KEY_TYPES = ("initiator", "target", "portal", "lun")


@dataclass
class KvList:
    """The parsed names of one option: ``all`` or ``names`` (in order)."""

    key_type: str
    all: bool
    names: list[str]


@dataclass
class KvResult:
    lists: list[KvList]
    failed: bool  # every argument was refused (the command returns -1)
    messages: str


def parse(
    args: list[str], allowed: tuple[str, ...], allow_null: bool, allow_all: bool, allow_list: bool
) -> KvResult:
    """``str_list_parse_kv_pair`` over the arguments grabbed for one option."""
    lists: list[KvList] = []
    messages = ""
    errors = 0
    for arg in args:
        key, eq, value = arg.partition("=")
        if not eq:
            messages += f'ERROR: key-value {arg} "=" missing\n'
            messages += f"{arg} INVALID.\n"
            continue
        key_type = lower(key)
        if key_type not in KEY_TYPES:
            messages += f"ERROR: unknown key {arg}.\n"
            messages += f"{arg} INVALID.\n"
            continue
        if key_type not in allowed:
            messages += f"ERROR: {arg} unknown keys.\n"
            errors += 1
            continue
        elements = value.split(",")
        if len(elements) > 1:
            if not allow_list:
                messages += f"ERROR: {arg} list value not supported.\n"
                errors += 1
                continue
            # Empty elements are released from a list (iscsictl_cmd.c 261-276);
            # two in a row make the source free a live element: see assumptions.
            non_empty = [e for e in elements if e]
            elements = non_empty or [""]
        if any(e == "ALL" for e in elements):
            elements = ["ALL"]
        if any(e == "" for e in elements) and not allow_null:
            messages += f"WARN: {arg} has no value.\n"
            errors += 1
            continue
        if elements == ["ALL"] and not allow_all:
            messages += f"ERROR: {arg} not supported.\n"
            errors += 1
            continue
        if elements == ["ALL"]:
            lists.append(KvList(key_type, True, []))
        else:
            lists.append(KvList(key_type, False, [e for e in elements if e]))
    return KvResult(lists, not lists and errors > 0, messages)
