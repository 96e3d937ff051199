"""Where the steady case's time goes (issue 23): py-spy samples every xnatd process
(main and receiving workers) while the mixed sessions arrive in lanes, one association
per session, then prints each process's busiest threads and the lines they were on.

    pip install py-spy   # a profiler, not one of xnatd's dependencies
    python3 bench/profile_ingest.py [--lanes 4] [--idle 1s] [--mode wall|cpu|gil|perf]
        [--top 12] [--inclusive]

``wall`` samples idle threads too (where a receiving thread waits: the fsync, the next
PDU, a lock); ``cpu`` only threads py-spy sees running (a thread in fsync counts as
running); ``gil`` only the thread holding the GIL: where each process's Python time
goes. Each thread's busiest lines are listed, then (``--inclusive``) the functions its
samples were inside, callers included. ``perf`` is Linux perf (``-e cpu-clock``) over
the same processes, native code and kernel included: the shares of the libraries, of
the system calls the kernel's time was spent in, and of the busiest symbols. Sampling
starts once the daemon is up and stops at the last READY, so start-up (imports, their
garbage collections) is not in it. The mixed set is generated into a temporary folder,
as ``bench/ingest.py`` makes it.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import process_tree
from helpers import wait_for
from ingest import make_mixed, positive_count, ready_count, send_sessions, start, stop

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")
# Kernel frames that name the system call a sample is inside (write shows as ksys_write)
SYSTEM_CALL_ENTRIES = ("__x64_sys_", "__do_sys_", "ksys_")


def _samplers(work: Path, pids: list[int], mode: str) -> tuple[list[subprocess.Popen], list[Path]]:
    """One py-spy per process, or one perf over them all; with the files they write."""
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if mode == "perf":
        output = work / "perf.data"
        pid_list = ",".join(map(str, pids))
        command = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g"]
        return [subprocess.Popen([*command, "-p", pid_list, "-o", str(output)], **quiet)], [output]
    spies, outputs = [], []
    for pid in pids:
        output = work / f"py-spy-{pid}.txt"
        extra = {"wall": ["--idle"], "cpu": [], "gil": ["--gil"]}[mode]
        command = ["py-spy", "record", "-p", str(pid), "-r", "100", "-f", "raw"]
        spies.append(subprocess.Popen([*command, "--threads", "-o", str(output), *extra], **quiet))
        outputs.append(output)
    return spies, outputs


def profile(work: Path, folders: list[Path], lanes: int, idle: str, mode: str) -> list[Path]:
    """Send the sessions with samplers attached to every xnatd process; their raw outputs."""
    peer = start("xnatd", work / "receiver", idle)
    outputs: list[Path] = []
    spies: list[subprocess.Popen] = []
    try:
        spies, outputs = _samplers(work, process_tree(peer.process.pid), mode)
        time.sleep(1.0)  # the samplers attach
        seconds = send_sessions(peer, folders, lanes, nodelay=True)
        index = work / "receiver" / "data" / "index.sqlite"
        wait_for(lambda: ready_count(index) >= len(folders), timeout=900, interval=0.05)
        print(f"sent in {seconds:.1f} s, every session READY; {lanes} lanes, idle {idle}")
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(timeout=60)
        stop(peer)
    written = [output for output in outputs if output.exists()]
    for output in sorted(set(outputs) - set(written)):
        print(
            f"{output.name}: no profile written: the sampler may not be allowed to attach "
            "(run as root, or sysctl kernel.yama.ptrace_scope=0 and kernel.perf_event_paranoid=1)",
            file=sys.stderr,
        )
    return written


def summarize_perf(output: Path, top: int) -> None:
    """Shares of perf's samples: by library, by the system call a kernel sample was
    inside, and by symbol (the sampled frame)."""
    script = subprocess.run(
        ["perf", "script", "-i", str(output), "-F", "ip,sym,dso"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    libraries: collections.Counter[str] = collections.Counter()
    calls: collections.Counter[str] = collections.Counter()
    symbols: collections.Counter[str] = collections.Counter()
    for sample in script.split("\n\n"):
        frames = [_perf_frame(line) for line in sample.splitlines() if line.strip()]
        if not frames:
            continue
        symbol, library = frames[0]
        libraries[library] += 1
        symbols[f"{symbol} ({library})"] += 1
        if library == "[kernel.kallsyms]":
            entries = [name for name, _ in frames if name.startswith(SYSTEM_CALL_ENTRIES)]
            calls[entries[-1].split("sys_", 1)[1] if entries else "(no system call)"] += 1
    total = sum(libraries.values())
    print(f"\n{output.name}: {total} samples")
    for title, counter in (("libraries", libraries), ("kernel, by system call", calls),
                           ("symbols", symbols)):  # fmt: skip
        print(f"  {title}:")
        for name, count in counter.most_common(top):
            print(f"    {count / total:6.1%}  {name}")


def _perf_frame(line: str) -> tuple[str, str]:
    """(symbol, library file name) of one ``perf script`` frame line."""
    _, _, rest = line.strip().partition(" ")
    symbol, _, library = rest.rpartition(" (")
    return symbol or "?", Path(library.rstrip(")")).name


def summarize(output: Path, top: int, inclusive: bool = False) -> None:
    """Each thread's samples and the lines it was seen on most (leaf frames); with
    ``inclusive``, the functions its samples were inside (each counted once a sample)."""
    threads: collections.Counter[str] = collections.Counter()
    lines: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    within: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for raw in output.read_text().splitlines():
        stack, _, count = raw.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        # "thread (123): name" with the run's numbers taken out, so that threads of
        # the same kind (one per association) are counted together
        thread = re.sub(r"\d{4,}|Thread-\d+", "#", frames[0].split(": ", 1)[-1])
        threads[thread] += int(count)
        match = FRAME.match(frames[-1])
        leaf = frames[-1]
        if match:
            leaf = f"{match['function']} ({Path(match['file']).name}:{match['line']})"
        lines[thread][leaf] += int(count)
        functions = set()
        for frame in frames[1:]:
            found = FRAME.match(frame)
            functions.add(f"{found['function']} ({Path(found['file']).name})" if found else frame)
        for function in functions:
            within[thread][function] += int(count)
    print(f"\n{output.name}")
    for thread, samples in threads.most_common(6):
        print(f"  {thread}: {samples} samples")
        for leaf, count in lines[thread].most_common(top):
            print(f"    {count / samples:6.1%}  {leaf}")
        if inclusive:
            print("    inside:")
            for function, count in within[thread].most_common(top):
                print(f"    {count / samples:6.1%}  {function}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=positive_count, default=4)
    parser.add_argument("--idle", default="1s")
    parser.add_argument("--mode", choices=("wall", "cpu", "gil", "perf"), default="wall")
    parser.add_argument("--top", type=positive_count, default=12)
    parser.add_argument("--inclusive", action="store_true", help="also the functions inside")
    args = parser.parse_args()
    tool = "perf" if args.mode == "perf" else "py-spy"
    if shutil.which(tool) is None:
        how = "apt install linux-perf" if tool == "perf" else "pip install py-spy"
        sys.exit(f"{tool} is not installed ({how})")
    work = Path(tempfile.mkdtemp(prefix="xnatd-profile-"))
    try:
        folders = make_mixed(work / "data", 1.0)
        for output in profile(work, folders, args.lanes, args.idle, args.mode):
            if args.mode == "perf":
                summarize_perf(output, args.top)
            else:
                summarize(output, args.top, args.inclusive)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
