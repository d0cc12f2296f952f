"""Peak host memory of one computation (Linux RSS probes), for `NTKResult.peak_rss_increase_bytes`
and `benchmarks/ntk.py`. Host memory only: on a GPU the kernel and activations live in device
memory, which these probes do not see (torch.cuda.max_memory_allocated does)."""
from __future__ import annotations

import os


class PeakRSS:
    """`with PeakRSS() as memory: ...` then `memory.increase`: how far the process's peak resident
    set rose, inside the block, above its size at the start (None where unsupported)."""

    def __enter__(self) -> PeakRSS:
        self.supported = reset_peak_rss()
        self.baseline = current_rss_bytes()
        self.increase: int | None = None
        return self

    def __exit__(self, *exc) -> None:
        peak = peak_rss_bytes() if self.supported else None
        self.increase = (peak - self.baseline) if (peak is not None and self.baseline is not None) else None


def reset_peak_rss() -> bool:
    """Return freed heap memory to the OS (glibc `malloc_trim`, so memory freed by an earlier
    computation does not hide this one's) and reset the kernel's peak-RSS counter of this
    process (Linux); False where unsupported."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int | None:
    """Peak resident set size since the last reset (VmHWM), or None off Linux."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None
