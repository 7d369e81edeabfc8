"""iscsi-perf against the embedded target and against tgtd, on the same file, as a ratio.

Run: ``python3 benchmarks/iscsi_perf.py [--seconds 5] [--blocks 8]``

Both targets run on this machine on free loopback ports, one after the
other, serving the same 64 MiB file; libiscsi's ``iscsi-perf`` reads for
``--seconds`` against each and the IOPS and the ratio are printed. Not a
test: the machine is shared and noisy, so only the ratio of one run means
anything. Both servers are stopped by PID.
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from iscsi_helper.lab.wire.control import WireService
from iscsi_helper.lab.wire.model import WireLun, WireTarget

IQN = "iqn.2010-10.org.openstack:perf"


def free_port(low: int = 0, high: int = 0) -> int:
    if low:
        for port in range(low, high):
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                    return port
                except OSError:
                    continue
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def iscsi_perf(url: str, seconds: int, blocks: int) -> tuple[float, str]:
    done = subprocess.run(["iscsi-perf", "-t", str(seconds), "-b", str(blocks), url],
                          capture_output=True, text=True, timeout=seconds + 60)
    out = done.stdout + done.stderr
    rates = re.findall(r"iops average (\d+)", out)
    if not rates:
        raise RuntimeError(f"iscsi-perf gave no IOPS figure: {out[-300:]}")
    summary = [l for l in out.splitlines() if l.startswith("iops average")]
    return float(rates[-1]), (summary[-1] if summary else "").strip()


def run_wire(image: str, run_dir: Path, seconds: int, blocks: int) -> tuple[float, str]:
    port = free_port()
    service = WireService(run_dir)
    try:
        service.publish(WireTarget(IQN, [WireLun(image)], [("127.0.0.1", port)], auth_method="None"))
        return iscsi_perf(f"iscsi://127.0.0.1:{port}/{IQN}/0", seconds, blocks)
    finally:
        service.stop()


def run_tgtd(image: str, seconds: int, blocks: int) -> tuple[float, str]:
    port, control = free_port(), free_port(20000, 32000)  # tgtd refuses -C above 32767
    tgtd = subprocess.Popen(["tgtd", "-f", "--iscsi", f"portal=127.0.0.1:{port}", "-C", str(control)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def adm(*args: str) -> None:
            subprocess.run(["tgtadm", "-C", str(control), "--lld", "iscsi", *args], check=True,
                           capture_output=True, timeout=30)
        for _ in range(50):
            try:
                adm("--mode", "target", "--op", "show")
                break
            except subprocess.CalledProcessError:
                time.sleep(0.1)
        adm("--mode", "target", "--op", "new", "--tid", "1", "-T", IQN)
        adm("--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", "1", "-b", image)
        adm("--mode", "target", "--op", "bind", "--tid", "1", "-I", "ALL")
        return iscsi_perf(f"iscsi://127.0.0.1:{port}/{IQN}/1", seconds, blocks)
    finally:
        tgtd.terminate()
        try:
            tgtd.wait(10)
        except subprocess.TimeoutExpired:
            tgtd.kill()
            tgtd.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=8, help="blocks (512 B) per request")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        image = str(Path(scratch) / "perf.img")
        with open(image, "wb") as handle:
            handle.truncate(64 << 20)
        wire, wire_line = run_wire(image, Path(scratch) / "wire", args.seconds, args.blocks)
        tgt, tgt_line = run_tgtd(image, args.seconds, args.blocks)
    print(f"iscsi-perf -t {args.seconds} -b {args.blocks}, same 64 MiB file, loopback")
    print(f"  embedded target (iscsi_helper.lab.wire): {wire:10.0f} IOPS   ({wire_line})")
    print(f"  tgtd                                : {tgt:10.0f} IOPS   ({tgt_line})")
    print(f"  ratio embedded / tgtd               : {wire / tgt:10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
