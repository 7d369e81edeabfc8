"""The served-target description: JSON round trip, validation, no secrets in repr."""

from __future__ import annotations

import pytest

from iscsi_helper.lab.wire import chap
from iscsi_helper.lab.wire.model import WireLun, WireTarget, format_portal
from iscsi_helper.lab.wire.negotiation import SessionParams, parse_text


def _target(**kwargs: object) -> WireTarget:
    base: dict[str, object] = {
        "iqn": "iqn.2010-10.org.openstack:volume-1",
        "luns": [WireLun("/dev/null", serial="SN1", wwn="5000c50000000001")],
        "portals": [("10.0.0.1", 3260), ("[fd00::1]", 3261)],
    }
    base.update(kwargs)
    return WireTarget(**base)  # type: ignore[arg-type]


def test_json_round_trip_keeps_every_field() -> None:
    t = _target(
        auth_method="CHAP",
        chap_policy="Mutual",
        initiator_credentials=[("u1", "s1"), ("u2", "s2")],
        target_credential=("tu", "ts"),
        acl=["iqn.1994-05.com.redhat:host1"],
        tpgt=7,
    )
    back = WireTarget.from_json(t.to_json())
    assert back == t
    assert back.portals == [("10.0.0.1", 3260), ("fd00::1", 3261)]  # brackets stripped once
    assert back.luns[0].serial == "SN1"


def test_repr_hides_chap_secrets() -> None:
    t = _target(initiator_credentials=[("user", "topsecret-1")], target_credential=("tuser", "topsecret-2"))
    assert "topsecret" not in repr(t)
    assert t.secrets() == ["topsecret-1", "topsecret-2"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"auth_method": "Kerberos"}, "auth_method"),
        ({"chap_policy": "Sometimes"}, "chap_policy"),
        ({"auth_method": "CHAP"}, "initiator credential"),
        ({"chap_policy": "Mutual", "initiator_credentials": [("u", "s")]}, "target_credential"),
        ({"iqn": "volume 1"}, "target name"),
        ({"portals": [("127.0.0.1", 0)]}, "portal"),
        ({"luns": [WireLun("/x", block_size=999)]}, "block_size"),
    ],
)
def test_validation_rejects_bad_definitions(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _target(**kwargs).validate()


def test_ipv6_portals_are_bracketed_for_sendtargets() -> None:
    assert format_portal("::1", 3260) == "[::1]:3260"
    assert format_portal("127.0.0.1", 3260) == "127.0.0.1:3260"


def test_chap_md5_matches_rfc1994_construction() -> None:
    import hashlib

    challenge = bytes(range(16))
    expected = hashlib.md5(b"\x07" + b"secret" + challenge).digest()
    assert chap.response(7, "secret", challenge) == expected
    assert chap.check(7, challenge, "user", expected, [("other", "x"), ("user", "secret")])
    assert not chap.check(7, challenge, "user", expected, [("user", "wrong")])
    assert chap.decode_binary("0x" + expected.hex()) == expected
    import base64

    assert chap.decode_binary("0b" + base64.b64encode(expected).decode()) == expected
    with pytest.raises(chap.ChapFormatError):
        chap.decode_binary("abcd")


def test_negotiation_follows_rfc_result_functions() -> None:
    p = SessionParams()
    assert p.negotiate("HeaderDigest", "CRC32C,None") == "CRC32C" and p.header_digest
    assert p.negotiate("DataDigest", "None") == "None" and not p.data_digest
    assert p.negotiate("MaxBurstLength", str(1 << 23)) == str(1 << 20)  # min
    assert p.negotiate("FirstBurstLength", "4096") == "4096"
    assert p.negotiate("InitialR2T", "Yes") == "Yes"  # OR
    assert p.negotiate("ImmediateData", "No") == "No"  # AND
    assert p.negotiate("ErrorRecoveryLevel", "2") == "0"
    assert p.negotiate("MaxRecvDataSegmentLength", "65536") is None and p.initiator_max_recv_data == 65536
    assert p.negotiate("X-com.example.Foo", "1") == "NotUnderstood"
    assert p.negotiate("MaxBurstLength", "banana") == "Reject"
    assert parse_text(b"A=1\0B=x=y\0") == [("A", "1"), ("B", "x=y")]


def test_crc32c_known_vector_and_digest_framing() -> None:
    """CRC32C is used for negotiated digests; a wrong polynomial would corrupt every PDU."""
    import asyncio

    from iscsi_helper.lab.wire.pdu import OP_NOP_IN, PDUError, PDUStream, crc32c, new_pdu

    assert crc32c(b"123456789") == 0xE3069283  # RFC 3720 appendix B.4 check value

    async def roundtrip(corrupt: bool) -> bytes:
        reader = asyncio.StreamReader()

        class Sink:
            def write(self, data: bytes) -> None:
                if corrupt:
                    data = data[:-1] + bytes([data[-1] ^ 1])
                reader.feed_data(data)

        stream = PDUStream(reader, Sink())  # type: ignore[arg-type]
        stream.header_digest = stream.data_digest = True
        pdu = new_pdu(OP_NOP_IN, itt=7)
        pdu.data = b"ping"
        stream.write(pdu)
        return (await stream.read()).data

    assert asyncio.run(roundtrip(False)) == b"ping"
    with pytest.raises(PDUError, match="data digest"):
        asyncio.run(roundtrip(True))


def test_libiscsi_output_parser_tells_skipped_and_failed_from_passed() -> None:
    from .cu_results import parse

    sample = (
        "Suite: Unmap\n"
        "  Test: Simple ...passed\n"
        "  Test: VPD ...    [SKIPPED] UNMAP is not implemented.\npassed\n"
        "  Test: Zero ...    [FAILED] UNMAP failed\nFAILED\n    1. test_unmap.c:1  - CU_ASSERT\n"
        "Suite: Reserve6\n"
        "  Test: LUNReset ...passed    [FAILED] PRIN command: failed (teardown)\n\n"
        "  Test: Cut ...    Take out a RESERVE6\n"
    )
    results = parse(sample)
    assert {k: v.verdict for k, v in results.items()} == {
        "Unmap.Simple": "passed",
        "Unmap.VPD": "skipped",
        "Unmap.Zero": "failed",
        "Reserve6.LUNReset": "passed",
        "Reserve6.Cut": "unfinished",
    }
    assert results["Unmap.VPD"].skip_reasons == ["UNMAP is not implemented."]
