"""Start a command pinned to some CPUs, and make it die with the benchmark.

    python bench/pin.py CPUS PARENT_PID NICE -- command args...

CPUS is a comma-separated list ("1" or "0,2"), or "-" to leave the affinity
alone. The process then execs the command, so the command keeps this pid (the
benchmark reads /proc/<pid> of it). Before the exec it:

* pins itself with sched_setaffinity (inherited by every thread the command
  starts later, which a sched_setaffinity from the parent would not reach);
* asks Linux to send it SIGTERM when the benchmark process dies
  (prctl PR_SET_PDEATHSIG), so no server or load generator outlives a crashed
  or interrupted benchmark;
* applies NICE (0 leaves it; a negative value, which needs root, gives the
  server and the load generator priority over other programs on a shared machine).
  Linux's autogroup scheduling shares a CPU fairly between sessions first and
  applies a process's nice only within its session, so the process also starts
  a session of its own and gives that session's autogroup the same nice;
* raises its open-file limit to the hard limit (10,000 sockets need it).
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys

PR_SET_PDEATHSIG = 1


def main() -> None:
    if len(sys.argv) < 6 or sys.argv[4] != "--":
        sys.exit("usage: pin.py CPUS PARENT_PID NICE -- command args...")
    cpus, parent, nice, cmd = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[5:]
    if nice:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        try:
            os.setsid()
            with open("/proc/self/autogroup", "w") as f:
                f.write(str(nice))
        except OSError:  # no autogroups here, or not allowed: the plain nice still applies
            pass
    if cpus != "-" and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the benchmark's own cleanup still applies
        pass
    if os.getppid() != parent:  # the benchmark died before prctl took effect
        sys.exit(1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.execvp(cmd[0], cmd)


if __name__ == "__main__":
    main()
