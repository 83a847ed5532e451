"""Whether this machine's second core is giving its full speed right now: every few
seconds, (50,100,5) batch 64 back to back on one thread and on two, how many of the
two-thread calls the helper joined, and the CPUs the process's threads are on.

    python dev/vcpu_state.py [rounds]

On this project's 2-vCPU VM the two-thread time flipped between 18 us (1.46x the one-
thread time) and 25 us (1.02x) from one minute to the next, the helper joining every
call from the other CPU and no steal time counted: the host, not the code. Run it beside
a surprising benchmark to see which state it met.
"""

import os
import sys
import time

import numpy as np

import twolayer
from twolayer.benchmark import make_problem, raise_mmap_threshold
from twolayer.fast import threads


def cpus():
    # the CPU of each thread of this process, in thread-id order (the main thread first)
    def cpu(tid):
        with open(f"/proc/self/task/{tid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[36]

    return "".join(cpu(t) for t in sorted(os.listdir("/proc/self/task"), key=int))


def median_call(call, threads_wanted, seconds=0.3):
    twolayer.set_num_threads(threads_wanted)
    call()
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return np.median(times)


def main(rounds=20):
    raise_mmap_threshold()
    dims = (50, 100, 5)
    data, labels, params = make_problem(dims, 64, "float64")

    def call():
        return twolayer.forward_backward_prop(data, labels, params, dims, backend="numba")

    for _ in range(rounds):
        one = median_call(call, 1)
        opened, joined = threads.jobs_opened(), threads.jobs_joined()
        two = median_call(call, 2)
        joined, opened = threads.jobs_joined() - joined, threads.jobs_opened() - opened
        print(
            f"{time.strftime('%H:%M:%S')} one thread {one * 1e6:5.1f} us, two {two * 1e6:5.1f} us"
            f" ({one / two:.2f}x); helper joined {joined} of {opened}; CPUs of the threads {cpus()}",
            flush=True,
        )
        time.sleep(3)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
