"""A corpus of target blocks, each with the verdict chiscsi's source gives it.

Every case is started with ``iscsictl -S target=<name> -f <file>`` and must
end exactly as the product would: accepted (``target <name> added.``) or
refused with the kernel's own message(s) followed by ``ERROR: Failed to
start target <name>!`` and exit status 255. The ``source`` of each case
names the rule (paths under src/chiscsi/ of janekmi/ChelsioUwire); the
corpus covers every probe issue 12 lists (secret lengths, ``#`` and ``,`` in
secrets, BLK on a regular file, a zero-size FILE, one device in two targets,
portal 0.0.0.0, upper-case IQNs, Chelsio's sample file).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from .chiscsi_support import Host, iqn

NAME = iqn("corpus")
OTHER = iqn("other")


@dataclass(frozen=True)
class Case:
    id: str
    source: str
    body: str
    refusal: str | None = None  # kernel/user messages of a refusal; None: accepted
    warnings: str = ""  # messages printed before "added." on success
    shows: tuple[str, ...] = ()  # text the detailed -c output must hold afterwards
    needs_block_device: bool = False
    before: str | None = None  # a target started first (body of OTHER)
    exact_stderr: str | None = None
    exit: int | None = None
    target_arg: str = NAME


BASE = "\tTargetName={name}\n\tTargetDevice={disk},FILE\n\tPortalGroup=1@127.0.0.1:{port}\n"
CASES = [
    # ---- accepted ------------------------------------------------------------
    Case(
        "minimal-file",
        "private/klib/common/iscsi_node.c 460-515",
        BASE,
        shows=(
            "\tTargetDevice={disk},FILE,PROD=CHISCSI Target,SN=0N0743000000000,"
            "ID=0D074300000000000000000,WWN=:W00743000000000",
        ),
    ),
    Case(
        "cinder-cxtadm-layout",
        "private/ulib/iscsictl_cmd.c 506-529 (leading and trailing blanks)",
        "\n                       TargetName={name}\n                       TargetDevice={blk}\n"
        "                       PortalGroup=1@127.0.0.1:{port}\n                 \n",
        needs_block_device=True,
        shows=(
            "\tTargetDevice={blk},BLK,PROD=CHISCSI Target,SN=0N0743000000000,"
            "ID=0D074300000000000000000,WWN=:W00743000000000",
        ),
    ),
    Case(
        "cinder-cxtadm-chap",
        "security/chap/iscsi_chap_key.c 188-313",
        "\n      TargetName={name}\n      TargetDevice={blk}\n      PortalGroup=1@127.0.0.1:{port}\n"
        "      AuthMethod=CHAP\n      Auth_CHAP_Policy=Oneway\n"
        '      Auth_CHAP_Initiator="k6d9wJ8qW7mNx2Ab":"Zp4fQ9vL2sT8yR3c"\n',
        needs_block_device=True,
        shows=("\tAuthMethod=CHAP", '\tAuth_CHAP_Initiator="k6d9wJ8qW7mNx2Ab":"********"'),
    ),
    Case(
        "default-class-is-blk",
        "base/target/lu_init.c 17-20; target_class.c 192-195",
        "\tTargetName={name}\n\tTargetDevice={blk}\n\tPortalGroup=1@127.0.0.1:{port}\n",
        needs_block_device=True,
        shows=("\tTargetDevice={blk},BLK,",),
    ),
    Case(
        "secret-12",
        "includes/common/iscsi_chap.h 6",
        BASE + '\tAuth_CHAP_Initiator="u1":"abcdefghijkl"\n',
        shows=("\tAuthMethod=None,CHAP",),
    ),
    Case(
        "secret-16",
        "includes/common/iscsi_chap.h 7",
        BASE + '\tAuth_CHAP_Initiator="u1":"abcdefghijklmnop"\n',
    ),
    Case(
        "secret-inner-space",
        "iscsi_chap_key.c 285-292 (only a leading space is refused)",
        BASE + '\tAuth_CHAP_Initiator="u1":"abc def ghijk"\n',
    ),
    Case(
        "text-after-secret-ignored",
        "iscsi_chap_key.c 241-251",
        BASE + '\tAuth_CHAP_Initiator="u1":"abcdefghijkl"trailing\n',
    ),
    Case(
        "two-initiators-distinct",
        "iscsi_chap_key.c 315-333",
        BASE + '\tAuth_CHAP_Initiator="u1":"abcdefghijkl"\n\tAuth_CHAP_Initiator="u2":"mnopqrstuvwx"\n',
    ),
    Case(
        "mutual-with-target-secret",
        "iscsi_chap_key.c 525-562",
        BASE + '\tAuth_CHAP_Policy=Mutual\n\tAuth_CHAP_Target="t1":"targetsecret1"\n'
        '\tAuth_CHAP_Initiator="u1":"abcdefghijkl"\n',
        shows=("\tAuth_CHAP_Policy=Mutual", '\tAuth_CHAP_Target="t1":"********"'),
    ),
    Case(
        "mutual-without-target-secret",
        "iscsi_chap_key.c 564-626 (no such check)",
        BASE + "\tAuth_CHAP_Policy=Mutual\n",
    ),
    Case(
        "auth-list-chap-none",
        "security/iscsi_auth.c 145-235; text/iscsi_text_decode.c 391-455",
        BASE + '\tAuthMethod=CHAP,None\n\tAuth_CHAP_Initiator="u1":"abcdefghijkl"\n',
        shows=("\tAuthMethod=None,CHAP",),
    ),
    Case(
        "auth-chap-without-chap-keys",
        "iscsi_chap_key.c 965-985 (no chap_node: CHAP shows as off)",
        BASE + "\tAuthMethod=CHAP\n",
        shows=("\tAuthMethod=None",),
    ),
    Case(
        "auth-list-one-bad-value",
        "text/iscsi_text_decode.c 413-417 (bad list values are skipped)",
        BASE + '\tAuthMethod=CHAP,Kerberos\n\tAuth_CHAP_Initiator="u1":"abcdefghijkl"\n',
        warnings="WARN! AuthMethod, Kerberos, not supported.\n",
        shows=("\tAuthMethod=CHAP",),
    ),
    Case(
        "portal-without-port",
        "text/iscsi_keys_common.c 319, 376-380",
        "\tTargetName={name}\n\tTargetDevice={disk},FILE\n\tPortalGroup=1@127.42.0.1\n",
        shows=("\tPortalGroup=1@127.42.0.1:3260,timeout=0",),
    ),
    Case(
        "portal-tag-0",
        "text/iscsi_config_keys.c 136-145",
        BASE.replace("1@", "0@"),
        shows=("\tPortalGroup=0@127.0.0.1:{port},timeout=0",),
    ),
    Case(
        "portal-timeout",
        "text/iscsi_config_keys.c 105-126",
        BASE.replace("{port}\n", "{port},timeout=5\n"),
        shows=("\tPortalGroup=1@127.0.0.1:{port},timeout=5",),
    ),
    Case(
        "portal-octal-parts",
        "text/iscsi_keys_common.c 55-64 (strtoul base 0)",
        BASE.replace("127.0.0.1", "0177.0.0.01"),
        shows=("\tPortalGroup=1@127.0.0.1:{port},timeout=0",),
    ),
    Case(
        "portal-ipv6",
        "text/iscsi_keys_common.c 176-205; includes/common/iscsi_tcp.h 51-71",
        BASE.replace("127.0.0.1:{port}", "[::1]:{port}"),
        shows=("\tPortalGroup=1@[0000:0000:0000:0000:0000:0000:0000:0001]:{port},timeout=0",),
    ),
    Case(
        "two-portal-groups",
        "target/iscsi_target_portal.c 27-74",
        BASE + "\tPortalGroup=2@127.0.0.2:{port}\n",
        shows=("\tPortalGroup=1@127.0.0.1:{port},timeout=0", "\tPortalGroup=2@127.0.0.2:{port},timeout=0"),
    ),
    Case(
        "two-portals-one-group",
        "target/iscsi_target_portal.c 27-74",
        BASE.replace("{port}\n", "{port},127.0.0.2:{port}\n"),
        shows=("\tPortalGroup=1@127.0.0.1:{port},127.0.0.2:{port},timeout=0",),
    ),
    Case(
        "acl-ignored-without-enable",
        "target/acl.c 327-336",
        BASE + "\tACL=iname=iqn.2004-08.com.example:init1\n",
        shows=("\tACL_Enable=No",),
    ),
    Case(
        "acl-with-enable",
        "target/acl.c 308-366, 368-431",
        BASE + "\tACL_Enable=Yes\n\tACL=iname=iqn.2004-08.com.example:init1;lun=ALL:R\n",
        shows=("\tACL_Enable=Yes", "\tACL=iname=iqn.2004-08.com.example:init1;lun=ALL:R"),
    ),
    Case(
        "acl-sip",
        "target/acl.c 141-271",
        BASE + "\tACL_Enable=Yes\n\tACL=sip=192.0.2.7,192.0.2.8\n",
        shows=("\tACL=sip=192.0.2.7,192.0.2.8;lun=ALL:RW",),
    ),
    Case(
        "extra-keys",
        "text/iscsi_config_keys.c 693-784; iscsi_connection_keys.c 419-456",
        BASE + "\tShadowMode=No\n\tTargetSessionMaxCmd=64\n\tTargetClass=CHELSIO\n\tRegisteriSNS=No\n"
        "\tIFMarkInt=2048\n\tOFMarkInt=1~65535\n\tACL_Enable=No\n",
        shows=("\tRegisteriSNS=No", "\tTargetSessionMaxCmd=64"),
    ),
    Case(
        "session-keys",
        "text/iscsi_session_keys.c 48-276",
        BASE + "\tMaxConnections=4\n\tInitialR2T=No\n\tImmediateData=No\n\tMaxOutstandingR2T=8\n"
        "\tFirstBurstLength=4096\n\tMaxBurstLength=8192\n\tDefaultTime2Wait=0\n\tDefaultTime2Retain=0\n"
        "\tDataPDUInOrder=Yes\n\tDataSequenceInOrder=Yes\n\tErrorRecoveryLevel=0\n",
        shows=("\tMaxConnections=4", "\tInitialR2T=No", "\tFirstBurstLength=4096"),
    ),
    Case(
        "digests",
        "text/iscsi_connection_keys.c 14-29; target/config_api.c 42-57",
        BASE + "\tHeaderDigest=None,CRC32C\n\tDataDigest=CRC32C\n",
        shows=("\tHeaderDigest=None,CRC32C", "\tDataDigest=CRC32C"),
    ),
    Case(
        "hex-number",
        "text/iscsi_value_numeric.c 363-373",
        BASE + "\tMaxRecvDataSegmentLength=0x2000\n",
        shows=("\tMaxRecvDataSegmentLength=8192",),
    ),
    Case(
        "alias",
        "text/iscsi_connection_keys.c 188-217; target/lun.c 190-218",
        BASE + "\tTargetAlias=vol7\n",
        shows=(
            "\tTargetAlias=vol7\n",
            "SN=0N0743410303416,ID=0D074341030341410303416,WWN=:W00743410303416\n",
        ),
    ),
    Case(
        "lun-options",
        "target/target_chelsio.c 8-150; common/iscsi_node.c 920-945",
        BASE.replace(",FILE\n", ",FILE,RO,SYNC,SN=SERIAL1,ID=DEVID1,WWN=WWN1,PROD=Disk\n"),
        shows=("\tTargetDevice={disk},FILE,RO,SYNC,PROD=Disk,SN=SERIAL1,ID=DEVID1,WWN=WWN1",),
    ),
    Case(
        "mem-lun",
        "base/target/lu_mem.c 165-249",
        BASE.replace("{disk},FILE", "ram1,MEM,size=32MB"),
        shows=("\tTargetDevice=ram1,MEM,PROD=CHISCSI Target",),
    ),
    Case(
        "same-file-two-spellings",
        "text/iscsi_keys_common.c 489-508 (strings differ)",
        BASE + "\tTargetDevice={disk},FILE,SYNC\n",
    ),
    Case(
        "space-before-equals",
        "private/ulib/iscsictl_cmd.c 618-620",
        "\tTargetName={name}\n\tTargetDevice ={disk},FILE\n\tPortalGroup=1@127.0.0.1:{port}\n",
    ),
    Case(
        "upper-case-name-lowered",
        "private/ulib/iscsictl_cmd.c 641-655; iscsi_connection_keys.c 142",
        "\tTargetName=IQN.2010-10.ORG.OpenStack:Volume-UPPER\n\tTargetDevice={disk},FILE\n"
        "\tPortalGroup=1@127.0.0.1:{port}\n",
        target_arg="iqn.2010-10.org.openstack:volume-upper",
        shows=("\tTargetName=iqn.2010-10.org.openstack:volume-upper",),
    ),
    Case("empty-alias", "text/iscsi_connection_keys.c 190-193 (allowed empty)", BASE + "\tTargetAlias=\n"),
    # ---- refused: CHAP -----------------------------------------------------------
    Case(
        "secret-11",
        "includes/common/iscsi_chap.h 6; iscsi_chap_key.c 274-284",
        BASE + '\tAuth_CHAP_Initiator="u1":"abcdefghijk"\n',
        "ERR! chap secret needs to be 12 ~ 16 characters.\n",
    ),
    Case(
        "secret-17",
        "includes/common/iscsi_chap.h 7",
        BASE + '\tAuth_CHAP_Initiator="u1":"abcdefghijklmnopq"\n',
        "ERR! chap secret needs to be 12 ~ 16 characters.\n",
    ),
    Case(
        "secret-6-guide-minimum",
        "iscsi_chap.h 6 (the guide's 6-255 is wrong)",
        BASE + '\tAuth_CHAP_Initiator="u1":"secret"\n',
        "ERR! chap secret needs to be 12 ~ 16 characters.\n",
    ),
    Case(
        "secret-leading-space",
        "iscsi_chap_key.c 285-292",
        BASE + '\tAuth_CHAP_Initiator="u1":" bcdefghijkl"\n',
        "ERR! chap secret cannot begin with a space character.\n",
    ),
    Case(
        "secret-comma",
        "iscsi_chap_key.c 293-302",
        BASE + '\tAuth_CHAP_Initiator="u1":"abcdef,hijkl"\n',
        "ERR! chap secret cannot contain commas\n",
    ),
    Case(
        "secret-hash",
        "private/ulib/iscsictl_cmd.c 514-525 (the last # starts a comment)",
        BASE + '\tAuth_CHAP_Initiator="u1":"abcdef#hijklm"\n',
        "ERR! chap secret missing 2nd double quote.\n",
    ),
    Case(
        "id-with-space",
        "iscsi_chap_key.c 263-272",
        BASE + '\tAuth_CHAP_Initiator="u 1":"abcdefghijkl"\n',
        "ERR! chap id cannot contain spaces or commas.\n",
    ),
    Case(
        "chap-unquoted",
        "iscsi_chap_key.c 194-200",
        BASE + "\tAuth_CHAP_Initiator=u1:abcdefghijkl\n",
        "ERR! chap id should be in double quote.\n",
    ),
    Case(
        "initiators-share-secret",
        "iscsi_chap_key.c 315-333",
        BASE + '\tAuth_CHAP_Initiator="u1":"abcdefghijkl"\n\tAuth_CHAP_Initiator="u2":"abcdefghijkl"\n',
        "duplicate chap name or secret for u2.\n",
    ),
    Case(
        "initiators-share-id",
        "iscsi_chap_key.c 315-333",
        BASE + '\tAuth_CHAP_Initiator="u1":"abcdefghijkl"\n\tAuth_CHAP_Initiator="u1":"mnopqrstuvwx"\n',
        "duplicate chap name or secret for u1.\n",
    ),
    Case(
        "target-secret-equals-initiator",
        "iscsi_chap_key.c 545-559 (the message shows the secret)",
        BASE + '\tAuth_CHAP_Target="t1":"abcdefghijkl"\n\tAuth_CHAP_Initiator="u1":"abcdefghijkl"\n',
        "same secret abcdefghijkl used for target and initiator!\n",
    ),
    Case(
        "two-target-secrets",
        "iscsi_chap_key.c 531-543 (no newline after the message)",
        BASE + '\tAuth_CHAP_Target="t1":"abcdefghijkl"\n\tAuth_CHAP_Target="t2":"mnopqrstuvwx"\n',
        "too many target chap id/secret: 2.",
    ),
    Case(
        "challenge-not-multiple-of-16",
        "iscsi_chap_key.c 339-354",
        BASE + "\tAuth_CHAP_ChallengeLength=20\n",
        "ERR! Invalid ChallengeLength 20.\n",
    ),
    Case(
        "challenge-over-max",
        "security/chap/iscsi_chap_private.h 16; text/iscsi_text_decode.c 219-231",
        BASE + "\tAuth_CHAP_ChallengeLength=2048\n",
        "Auth_CHAP_ChallengeLength ERR: 2048 > max 1024.\n",
    ),
    Case(
        "chap-policy-bad",
        "iscsi_chap_key.c 360-375",
        BASE + "\tAuth_CHAP_Policy=oneway\n",
        "ERR! invalid policy oneway.\n",
    ),
    Case(
        "auth-method-none-valid",
        "security/iscsi_auth.c 145-161; iscsi_text_decode.c 446-455",
        BASE + "\tAuthMethod=Kerberos\n",
        "WARN! AuthMethod, Kerberos, not supported.\nAuthMethod, ERR! NO valid value found.\n",
    ),
    # ---- refused: devices ------------------------------------------------------------
    Case(
        "blk-on-regular-file",
        "base/target/lu_blk.c 91-104 (default class BLK)",
        "\tTargetName={name}\n\tTargetDevice={disk}\n\tPortalGroup=1@127.0.0.1:{port}\n",
        "{disk} NOT BLK device.\n",
    ),
    Case(
        "explicit-blk-on-regular-file",
        "base/target/lu_blk.c 98-104",
        BASE.replace(",FILE", ",BLK"),
        "{disk} NOT BLK device.\n",
    ),
    Case(
        "zero-size-file",
        "base/target/lu_vfs.c 86-92",
        BASE.replace("{disk}", "{empty}"),
        "{empty} size is ZERO.\n",
    ),
    Case(
        "missing-file",
        "base/target/lu_vfs.c 55-65",
        BASE.replace("{disk}", "{dir}/absent"),
        "attach {dir}/absent failed -2.\n",
    ),
    Case(
        "directory",
        "base/target/lu_vfs.c 55-65 (EISDIR)",
        BASE.replace("{disk}", "{dir}"),
        "attach {dir} failed -21.\n",
    ),
    Case(
        "char-device",
        "base/target/lu_vfs.c 72-84",
        BASE.replace("{disk}", "/dev/null"),
        "/dev/null device type 0x21b6 NOT supported.\n",
    ),
    Case(
        "same-device-twice",
        "text/iscsi_keys_common.c 489-508",
        BASE + "\tTargetDevice={disk},FILE\n",
        "ERR! duplicate {disk},FILE.\n",
    ),
    Case(
        "device-in-another-target",
        "private/klib/target/lun.c 270-313",
        BASE,
        "{other} already has device {disk}.\n",
        before="\tTargetName={other}\n\tTargetDevice={disk},FILE\n\tPortalGroup=1@127.0.0.1:{port}\n",
    ),
    Case(
        "device-other-class",
        "private/klib/target/lun.c 275-301",
        BASE,
        "dev {disk} already with class MEM.\n",
        before="\tTargetName={other}\n\tTargetDevice={disk},MEM\n\tPortalGroup=1@127.0.0.1:{port}\n",
    ),
    Case(
        "ramdisk-name-in-two-targets",
        "private/klib/target/lun.c 276-282 (MEM may share a path)",
        BASE.replace("{disk},FILE", "ram1,MEM"),
        before="\tTargetName={other}\n\tTargetDevice=ram1,MEM\n\tPortalGroup=1@127.0.0.1:{port}\n",
    ),
    Case(
        "unknown-lun-option",
        "target/target_chelsio.c 132-146",
        BASE.replace(",FILE", ",FILE,size=1MB"),
        "{disk}: Unknown options for FILE luns.\n",
    ),
    Case(
        "mem-size-zero",
        "base/target/lu_mem.c 198-206",
        BASE.replace("{disk},FILE", "ram1,MEM,size=0MB"),
        "ERR! MEM: ram1 size invalid.\n",
    ),
    Case(
        "mem-size-unit",
        "base/target/lu_mem.c 185-197",
        BASE.replace("{disk},FILE", "ram1,MEM,size=1KB"),
        "ERR! MEM: ram1 size size=1KB not in MB/GB.\n",
    ),
    Case(
        "no-target-device",
        "text/iscsi_config_keys.c 831-842",
        "\tTargetName={name}\n\tPortalGroup=1@127.0.0.1:{port}\n",
        "TargetDevice missing.\n",
    ),
    # ---- refused: portals ---------------------------------------------------------------
    Case(
        "portal-0.0.0.0",
        "text/iscsi_keys_common.c 66-72",
        BASE.replace("127.0.0.1", "0.0.0.0"),
        "ERR! 0.0.0.0: all zero IP address.\n",
    ),
    Case(
        "portal-hostname",
        "text/iscsi_keys_common.c 33-53",
        BASE.replace("127.0.0.1", "localhost"),
        "ERR! localhost: invalid IP address format.\n",
    ),
    Case(
        "portal-ipv6-any",
        "text/iscsi_keys_common.c 196-202",
        BASE.replace("127.0.0.1:{port}", "[::]:{port}"),
        "ERR! [::]:{port}: all zero IP address.\n",
    ),
    Case(
        "portal-no-tag",
        "text/iscsi_config_keys.c 136-145",
        BASE.replace("1@127.0.0.1", "127.0.0.1"),
        "ERR! 127.0.0.1:{port} missing portal group tag.\n",
    ),
    Case(
        "portal-no-ip",
        "text/iscsi_config_keys.c 148-154",
        BASE.replace("1@127.0.0.1:{port}", "1@"),
        "ERR! 1@ missing ip address.\n",
    ),
    Case(
        "portal-duplicate-tag",
        "text/iscsi_config_keys.c 192-207",
        BASE + "\tPortalGroup=1@127.0.0.2:{port}\n",
        "PortalGroup, duplicate tag 1.\n",
    ),
    Case(
        "portal-duplicate-address",
        "text/iscsi_config_keys.c 209-226",
        BASE + "\tPortalGroup=2@127.0.0.1:{port}\n",
        "PortalGroup, duplicate ip 127.0.0.1:{port}.\n",
    ),
    Case(
        "portal-not-on-this-host",
        "target/iscsi_target_portal.c 376-395, 410-417",
        BASE.replace("127.0.0.1", "192.0.2.1"),
        "failed to start 192.0.2.1:{port}.\n{name}: No valid portal started!\n",
    ),
    Case(
        "portal-bad-timeout",
        "text/iscsi_config_keys.c 105-124",
        BASE.replace("{port}\n", "{port},timeout=5s\n"),
        "ERR! 1@127.0.0.1:{port},timeout=5s invalid timeout value.\n",
    ),
    Case(
        "no-portal-group",
        "text/iscsi_config_keys.c 819-829",
        "\tTargetName={name}\n\tTargetDevice={disk},FILE\n",
        "Invalid config: check portal and/or acl settings\n",
    ),
    # ---- refused: keys and values ----------------------------------------------------------
    Case(
        "first-burst-over-max-burst",
        "text/iscsi_session_keys.c 312-329",
        BASE + "\tFirstBurstLength=1048576\n",
        "FirstBurstLength=1048576 > MaxBurstLength=262144.\n",
    ),
    Case("unknown-key", "common/iscsi_node.c 322-328", BASE + "\tFooBar=1\n", "unrecognized key FooBar.\n"),
    Case(
        "initiator-key",
        "text/iscsi_text_decode.c 105-115",
        BASE + "\tInitiatorName=iqn.x\n",
        "InitiatorName: unexpected target key.\n",
    ),
    Case(
        "key-twice",
        "text/iscsi_text_decode.c 80-93",
        BASE + "\tMaxConnections=2\n\tMaxConnections=3\n",
        "MaxConnections: rcv'd 2 times.\n",
    ),
    Case(
        "empty-value",
        "text/iscsi_text_decode.c 95-103",
        BASE + "\tMaxConnections=\n",
        "MaxConnections: rcv'd empty value.\n",
    ),
    Case(
        "below-min",
        "text/iscsi_text_decode.c 205-217",
        BASE + "\tMaxConnections=0\n",
        "MaxConnections ERR: 0 < min 1.\n",
    ),
    Case(
        "not-a-number",
        "text/iscsi_value_numeric.c 374-385",
        BASE + "\tMaxConnections=four\n",
        "four: invalid decimal digits.\n",
    ),
    Case(
        "erl-1",
        "text/iscsi_session_keys.c 304-310",
        BASE + "\tErrorRecoveryLevel=1\n",
        "ErrorRecoveryLevel > 0 NOT supported.\n",
    ),
    Case(
        "data-pdu-out-of-order",
        "text/iscsi_session_keys.c 296-302",
        BASE + "\tDataPDUInOrder=No\n",
        "DataPDUInOrder=No NOT supported.\n",
    ),
    Case(
        "markers",
        "text/iscsi_connection_keys.c 492-499",
        BASE + "\tOFMarker=Yes\n",
        "Marker NOT supported!\n",
    ),
    Case(
        "boolean-lower-case",
        "text/iscsi_keys_common.c 469-487",
        BASE + "\tImmediateData=yes\n",
        "ERR! UNKNOWN boolean yes.\n",
    ),
    Case(
        "response-value",
        "text/iscsi_text_decode.c 283-296, 382-389 (refused without a message)",
        BASE + "\tImmediateData=Reject\n",
        "",
    ),
    Case(
        "name-underscore",
        "text/iscsi_connection_keys.c 161-177",
        "\tTargetName=iqn.2010-10.org.openstack:vol_1\n\tTargetDevice={disk},FILE\n\tPortalGroup=1@127.0.0.1:{port}\n",
        "iSCSI name iqn.2010-10.org.openstack:vol_1 contains prohibited ASCII '_' (0x005f).\n",
        target_arg="iqn.2010-10.org.openstack:vol_1",
    ),
    Case(
        "name-not-iqn",
        "text/iscsi_connection_keys.c 144-151",
        "\tTargetName=target1\n\tTargetDevice={disk},FILE\n\tPortalGroup=1@127.0.0.1:{port}\n",
        "ERR! INVALID iscsi name format target1.\n",
        target_arg="target1",
    ),
    Case(
        "target-class-unknown",
        "text/iscsi_config_keys.c 233-245",
        BASE + "\tTargetClass=FOO\n",
        "FOO, Unknown target class.\n",
    ),
    Case(
        "alias-with-comma",
        "text/iscsi_connection_keys.c 195-201",
        BASE + "\tTargetAlias=a,b\n",
        "ERR! Multiple Aliases not allowed\n",
    ),
    Case(
        "alias-in-use",
        "common/iscsi_node.c 365-371",
        BASE + "\tTargetAlias=shared\n",
        "An target with alias shared already exists.\n",
        before="\tTargetName={other}\n\tTargetDevice={disk2},FILE\n\tPortalGroup=1@127.0.0.1:{port}\n"
        "\tTargetAlias=shared\n",
    ),
    # ---- refused: ACLs ---------------------------------------------------------------------
    Case(
        "acl-iname-not-iqn",
        "text/iscsi_config_keys.c 313-337",
        BASE + "\tACL_Enable=Yes\n\tACL=iname=host1\n",
        "ERR! ACL iname invalid: host1.\n",
    ),
    Case(
        "acl-lun-list",
        "text/iscsi_config_keys.c 439-463 (LUN masking is a build option, off)",
        BASE + "\tACL_Enable=Yes\n\tACL=iname=iqn.x.y;lun=0:RW\n",
        "ERR! ACL lun 0 must be ALL.\n",
    ),
    Case(
        "acl-malformed-even-disabled",
        "text/iscsi_config_keys.c 568-584 (decoded before ACL_Enable is looked at)",
        BASE + "\tACL=user=iqn.x.y\n",
        "",
    ),
    Case(
        "acl-dip-not-a-portal",
        "target/acl.c 274-305",
        BASE + "\tACL_Enable=Yes\n\tACL=dip=192.0.2.9\n",
        "ACL dip invalid: 192.0.2.9.\n",
    ),
    Case(
        "acl-lun-not-last",
        "text/iscsi_config_keys.c 636-651 (one character past the value is copied)",
        BASE + "\tACL_Enable=Yes\n\tACL=lun=ALL:RW;iname=iqn.x.y\n",
        "ERR! ACL, bad rw permission RW;.\n",
    ),
    # ---- command-line level: names ---------------------------------------------------------
    Case(
        "upper-case-target-argument",
        "private/ulib/iscsictl_cmd.c 461-470, 641-655",
        "\tTargetName=IQN.2010-10.org.openstack:Upper\n\tTargetDevice={disk},FILE\n\tPortalGroup=1@127.0.0.1:{port}\n",
        target_arg="IQN.2010-10.org.openstack:Upper",
        exit=237,
        exact_stderr="ERROR: target name IQN.2010-10.org.openstack:Upper NOT found.\n"
        "ERROR: Failed to find target IQN.2010-10.org.openstack:Upper!\n",
    ),
    Case(
        "space-after-equals-in-name",
        "user/common/iscsictl_private.h 41-46 (value keeps its leading space)",
        "\tTargetName= {name}\n\tTargetDevice={disk},FILE\n\tPortalGroup=1@127.0.0.1:{port}\n",
        exit=237,
        exact_stderr="ERROR: target name {name} NOT found.\nERROR: Failed to find target {name}!\n",
    ),
]


def _fill(text: str, host: Host, blk: str) -> str:
    return text.format(
        name=NAME,
        other=OTHER,
        disk=host.disk(),
        disk2=host.disk("disk2"),
        empty=host.disk("empty", 0),
        dir=host.files,
        port=host.port,
        blk=blk,
    )


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_block_verdict_matches_the_source(case: Case, host: Host, request: pytest.FixtureRequest) -> None:
    blk = str(request.getfixturevalue("loop_device")) if case.needs_block_device else "/dev/null"
    if case.before is not None:
        first = host.block("before", _fill(case.before, host, blk))
        done = host.run("-S", f"target={OTHER}", "-f", str(first))
        assert done.code == 0, done.err
    path = host.block("case", _fill(case.body, host, blk))
    target = _fill(case.target_arg, host, blk)
    res = host.run("-S", f"target={target}", "-f", str(path))
    if case.exact_stderr is not None:
        assert (res.code, res.err) == (case.exit, _fill(case.exact_stderr, host, blk))
        return
    if case.refusal is None:
        assert (res.code, res.err) == (0, _fill(case.warnings, host, blk) + f"target {target} added.\n")
        shown = host.run("-c", f"target={target}")
        assert shown.code == 0
        for line in case.shows:
            assert _fill(line, host, blk) in shown.out, (line, shown.out)
        return
    expected = _fill(case.refusal, host, blk) + f"ERROR: Failed to start target {target}!\n"
    assert (res.code, res.err) == (255, expected)
    assert host.run("-c", f"target={target}").code == 255, "a refused block must leave no target"


def test_the_corpus_covers_every_probe_of_issue_12() -> None:
    ids = {c.id for c in CASES}
    for probe in (
        "secret-11",
        "secret-17",
        "secret-hash",
        "secret-comma",
        "blk-on-regular-file",
        "zero-size-file",
        "device-in-another-target",
        "portal-0.0.0.0",
        "upper-case-name-lowered",
        "upper-case-target-argument",
        "portal-hostname",
        "portal-duplicate-tag",
        "first-burst-over-max-burst",
        "challenge-not-multiple-of-16",
        "acl-ignored-without-enable",
        "auth-list-chap-none",
        "portal-without-port",
        "portal-tag-0",
        "portal-timeout",
        "extra-keys",
        "initiators-share-secret",
        "target-secret-equals-initiator",
        "same-device-twice",
    ):
        assert probe in ids
    assert len(CASES) >= 59
