"""What waking a sleeping helper costs the caller, and whether a lowest-priority watcher
thread can take that cost off it (dev/wake_cost.c).

    OPENBLAS_THREAD_TIMEOUT=18 python dev/wake_cost.py

For each way (the caller signals; a SCHED_IDLE watcher signals; a SCHED_IDLE thread
keeps the worker's CPU busy and the caller signals), prints the user's evaluation beside
it, then the medians of 200 round trips after the evaluation, after 1 ms asleep and after
0.1 ms: the time until the worker answers, and the caller's own cost (the time until it
can go on with its work). Linux only.
"""

import ctypes
import statistics
import time

from idle_wait import build, user_evaluation  # dev/idle_wait.py

WAYS = {"caller wakes": 0, "watcher wakes": 1, "keeper, caller wakes": 2}


def main():
    lib = build("wake_cost")
    lib.last_caller_cost.restype = ctypes.c_double
    evaluation = user_evaluation()

    def medians(before, times=200):
        answers, costs = [], []
        for _ in range(times):
            before()
            answers.append(lib.round_trip())
            costs.append(lib.last_caller_cost())
        return statistics.median(answers) * 1e6, statistics.median(costs) * 1e6

    def evaluation_ms(times=100):
        samples = []
        for _ in range(times):
            t = time.perf_counter()
            evaluation()
            samples.append(time.perf_counter() - t)
        return statistics.median(samples) * 1e3

    print(f"evaluation alone {evaluation_ms():.2f} ms")
    for name, way in WAYS.items():
        lib.start(way)
        time.sleep(0.01)
        cells = [f"evaluation {evaluation_ms():.2f} ms"]
        for label, before in (
            ("after the evaluation", evaluation),
            ("after 1 ms", lambda: time.sleep(0.001)),
            ("after 0.1 ms", lambda: time.sleep(0.0001)),
        ):
            answer, cost = medians(before)
            cells.append(f"{label}: answer {answer:.1f} us, caller {cost:.1f} us")
        lib.finish()
        print(f"{name:20s}  " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
