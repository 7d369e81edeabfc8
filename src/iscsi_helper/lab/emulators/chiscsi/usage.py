"""What ``iscsictl -h``, ``-v``, ``?`` and a bare ``iscsictl`` print.

Output text of src/chiscsi/user/cli/iscsictl.c 54-111 (``iscsictl_show_usage``,
``%s`` is argv[0]) and 127-131 (``-v``); version from includes/common/version.h.
"""

from __future__ import annotations

HEADER = " Usage: %s <option> [parameters]\n"
SUMMARY = (
    "\n"
    "    -f <filename>                       Specify iSCSI configuration file,\n"
    "                                        default to /etc/chelsio-iscsi/chiscsi.conf.\n"
    "    -S [var=const]*                     Start and/or Reload iSCSI target(s)\n"
    "    -s <var=const>*                     Stop iSCSI target(s)\n"
    "    -c [var=const]*\t\t\tGet iSCSI configuration\n"
    "    -g                                  Get iSCSI driver global settings\n"
    "    -G <var=const>**                    Set iSCSI driver global settings\n"
    "    -F [<var=const>* -k lun=<val>]      Flush data to the backend storage.\n"
    "    -r <var=const>* [-k key=<val>]      Retrieve session information\n"
    "    -D <Session handle in hex>\t\tDrop active session\n"
    "    -W                                  Write only current iSCSI configuration to config file\n"
    "    -h                                  Display detailed usage messages\n"
    "    -v                                  Display version information\n"
    "    -x                                  Use global defaults from configuration file\n"
    "\n"
    " Note: everything within square-brakets [] is optional, \n"
    "       everything angle-brackets <> is mandatory.\n"
    "\n"
)
DETAIL = (
    "\n"
    "    key=value:\n"
    "          RFC3270 specified or Chelsio specific key=value pairs\n"
    "\n"
    "          If no key=value is specified,\n"
    "          command will be completed with no changes\n"
    "\n"
    "    *var=const:\n"
    "          target=<name1[,name2,...,nameN] | ALL>\n"
    "\n"
    "          For MANDATORY var=const parameter(s):\n"
    "          If no var=const is specified, command will be denied\n"
    "\n"
    "          For OPTIONAL var=const parameter(s):\n"
    "          If no target=<> is specified, default to ALL\n"
    "\n"
    "    **var=const:\n"
    "           iscsi_auth_order=<ACL | CHAP>\n"
    "\t   iscsi_acl_order=<CONFIG | ISNS>\n"
    "           iscsi_login_complete_time=<N seconds>\n"
    "           iscsi_chelsio_ini_idstr=<chelsio initiator id substring>\n"
    "\n"
    "        discovery session chap control:\n"
    "           DISC_AuthMethod=<None | CHAP>\n"
    "           DISC_Auth_CHAP_Policy=<Oneway | Mutual>\n"
    '           DISC_Auth_CHAP_Target="<user id>":"<secret>"\n'
    '           DISC_Auth_CHAP_Initiator="<user id>":"<secret>"\n'
    "\n"
    "           If no var=const is specified,\n"
    "           command will be completed with no changes\n"
)
DRIVER_VERSION = "2.12.0.3"
BUILD_VERSION = "1203"
COPYRIGHT = "Copyright (c) 2005-2016 Chelsio Communications"


def usage(prog: str, detail: bool) -> str:
    return HEADER % prog + SUMMARY + (DETAIL if detail else "")


def version(prog: str) -> str:
    return f"{prog} v{DRIVER_VERSION}-{BUILD_VERSION}\n{COPYRIGHT}\n"
