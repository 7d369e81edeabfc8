"""chiscsi's ``iscsictl`` output, built as chiscsi's source prints it, for tool-free tests.

Layouts (chiscsi 2.12.0.3, src/chiscsi/): the summary and detail blocks of
private/klib/common/iscsi_node.c ~885-945 and private/klib/target/config_api.c
~119-135, each printed by ``printf("%s\\n", databuf)`` (private/ulib/iscsictl_cmd.c
~1036-1045), so every block starts with a blank line and ends with one.
"""

from __future__ import annotations

IQN = "iqn.2010-10.org.openstack:volume-1"
IQN2 = "iqn.2010-10.org.openstack:volume-10"

SESSION_AND_CONN_KEYS = (
    "\tErrorRecoveryLevel=0\n\tInitialR2T=Yes\n\tImmediateData=Yes\n\tDataPDUInOrder=Yes\n"
    "\tDataSequenceInOrder=Yes\n\tMaxConnections=1\n\tMaxOutstandingR2T=1\n"
    "\tFirstBurstLength=65536\n\tMaxBurstLength=262144\n\tDefaultTime2Wait=2\n"
    "\tDefaultTime2Retain=20\n\tHeaderDigest=None\n\tDataDigest=None\n"
    "\tMaxRecvDataSegmentLength=8192\n"
)


def detail_block(iqn: str, *, acl: bool = False, mutual: bool = False) -> str:
    text = (
        f"\ntarget:\n\tTargetName={iqn}\n"
        + SESSION_AND_CONN_KEYS
        + "\tAuthMethod=CHAP\n\tAuth_CHAP_Policy="
        + ("Mutual" if mutual else "Oneway")
        + "\n\tAuth_CHAP_ChallengeLength=16\n"
        + f"\tACL_Enable={'Yes' if acl else 'No'}\n\tRegisteriSNS=No\n\tShadowMode=No\n"
        + "\tTargetSessionMaxCmd=64\n"
    )
    if acl:
        text += "\tACL=iname=iqn.1993-08.org.debian:01:a,iqn.1993-08.org.debian:01:b;lun=ALL:RW\n"
    if mutual:
        text += '\tAuth_CHAP_Target="tgtuser":"********"\n'
    text += (
        '\tAuth_CHAP_Initiator="user1":"********"\n'
        "\tPortalGroup=1@127.0.0.1:3260,[0000:0000:0000:0000:0000:0000:0000:0001]:3260,"
        "timeout=0\n"
        "\tTargetDevice=/srv/disk.img,FILE,PROD=CHISCSI Target,SN=0123456789abcdef,"
        "ID=0D0743000000000000000000,WWN=:W007430000000000\n"
    )
    return text + "\n"


def summary_block(iqn: str, node_id: int) -> str:
    return (
        f"\nTARGET: {iqn}, id={node_id}, login_ip=0\n"
        "\tPortalGroup=1@10.9.8.7:3260,timeout=0\n"
        f"\tTargetDevice=/dev/vg/{iqn[-9:]},BLK,PROD=CHISCSI Target,SN=0N0743000000000\n\n"
    )
