"""Peak resident memory of this process, for the benchmark workers.

resource.getrusage's ru_maxrss is no good in a worker started by a bigger process: Linux carries
the parent's high-water mark across fork and exec, so a 13 MB child of a 413 MB parent reports
413 MB (measured). VmHWM in /proc/self/status belongs to the process's own address space.
"""

from __future__ import annotations

import re
import resource


def peak_rss_mb() -> float:
    """This process's peak RSS in MB: VmHWM on Linux, ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            found = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.MULTILINE)
        if found:
            return round(int(found.group(1)) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
