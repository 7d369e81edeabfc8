"""iscsi-perf against the embedded target and tgtd in one run: queue depth 1 and 32, 4 KiB and 256 KiB.

Run: ``python3 benchmarks/iscsi_perf.py [--seconds 4]``

Both targets serve the same 64 MiB file on free loopback ports, started
here and stopped by PID (tgtd through ``iscsi_helper.lab.rig``). libiscsi's
``iscsi-perf`` reads (``-m`` requests in flight, ``-b`` blocks each) for ``--seconds``
per case; iscsi-perf only reads, so writes are measured with ``qemu-img bench -w`` (same queue depths
and sizes) when qemu-img is installed. Cases alternate between the two
targets so that load on this shared machine hits both alike. Printed: IOPS
per target and case, the embedded/tgtd ratio, and the embedded target's
QD32/QD1 ratio. Not a test: only ratios from one run mean anything.
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from iscsi_helper.lab.rig import TgtdProcess, free_port, running_tgtd
from iscsi_helper.lab.wire.control import WireService
from iscsi_helper.lab.wire.model import WireLun, WireTarget

IQN = "iqn.2010-10.org.openstack:perf"
DISK = 64 << 20
CASES = [
    ("read", 1, 4096),
    ("read", 32, 4096),
    ("read", 1, 262144),
    ("read", 32, 262144),
    ("write", 1, 4096),
    ("write", 32, 4096),
    ("write", 1, 262144),
    ("write", 32, 262144),
]


def run_killable(argv: list[str], seconds: float) -> str:
    """iscsi-perf ignores SIGTERM while requests are in flight: end it with SIGKILL if it overstays."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
    return out


def measure(kind: str, url: str, depth: int, size: int, seconds: int) -> float:
    if kind == "read":
        out = run_killable(
            ["iscsi-perf", "-t", str(seconds), "-m", str(depth), "-b", str(size // 512), url], seconds + 30
        )
        rates = re.findall(r"iops average (\d+)", out)
        if not rates:
            raise RuntimeError(f"iscsi-perf gave no IOPS figure: {out[-300:]}")
        return float(rates[-1])
    # qemu-img bench: a fixed request count, timed here.
    count = max(200, int(seconds * (4000 if size == 4096 else 400)))
    start = time.perf_counter()
    out = run_killable(
        [
            "qemu-img",
            "bench",
            "-w",
            "-f",
            "raw",
            "-c",
            str(count),
            "-d",
            str(depth),
            "-s",
            str(size),
            "-S",
            str(size),
            "--pattern=0xa5",
            url,
        ],
        seconds * 10 + 60,
    )
    elapsed = time.perf_counter() - start
    if "Run completed" not in out:
        raise RuntimeError(f"qemu-img bench failed: {out[-300:]}")
    return count / elapsed


def serve_image(tgtd: TgtdProcess, image: str) -> str:
    """The image as LUN 1 of one target open to every initiator; its URL."""
    tgtd.tgtadm("--mode", "target", "--op", "new", "--tid", "1", "-T", IQN)
    tgtd.tgtadm("--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", "1", "-b", image)
    tgtd.tgtadm("--mode", "target", "--op", "bind", "--tid", "1", "-I", "ALL")
    return f"iscsi://127.0.0.1:{tgtd.portal_port}/{IQN}/1"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=4)
    args = parser.parse_args()
    writes = shutil.which("qemu-img") is not None
    with tempfile.TemporaryDirectory() as scratch:
        image = str(Path(scratch) / "perf.img")
        with open(image, "wb") as handle:
            handle.truncate(DISK)
        service = WireService(Path(scratch) / "wire")
        port = free_port()
        service.publish(WireTarget(IQN, [WireLun(image)], [("127.0.0.1", port)], auth_method="None"))
        wire_url = f"iscsi://127.0.0.1:{port}/{IQN}/0"
        results: dict[tuple[str, int, int], tuple[float, float]] = {}
        try:
            with running_tgtd(Path(scratch) / "tgtd.log") as tgtd:
                tgtd_url = serve_image(tgtd, image)
                for kind, depth, size in CASES:
                    if kind == "write" and not writes:
                        continue
                    wire = measure(kind, wire_url, depth, size, args.seconds)
                    tgt = measure(kind, tgtd_url, depth, size, args.seconds)
                    results[(kind, depth, size)] = (wire, tgt)
        finally:
            service.stop()
    print(f"same 64 MiB file, loopback; reads: iscsi-perf -t {args.seconds}; writes: qemu-img bench -w")
    print(f"{'case':<22}{'embedded IOPS':>15}{'tgtd IOPS':>12}{'embedded/tgtd':>15}")
    for (kind, depth, size), (wire, tgt) in results.items():
        label = f"{kind} QD{depth} {size // 1024} KiB"
        print(f"{label:<22}{wire:>15.0f}{tgt:>12.0f}{wire / tgt:>15.2f}")
    for kind in ("read", "write"):
        for size in (4096, 262144):
            if (kind, 1, size) in results:
                qd1, qd32 = results[(kind, 1, size)][0], results[(kind, 32, size)][0]
                print(f"embedded {kind} {size // 1024} KiB: QD32 / QD1 = {qd32 / qd1:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
