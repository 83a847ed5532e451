/* What waking a sleeping worker costs the thread that wakes it, measured from Python by
 * dev/wake_cost.py: the caller signals a condition variable itself, or leaves that to a
 * "watcher" thread at the lowest priority (SCHED_IDLE) that spins, yielding, and signals
 * for it; or a SCHED_IDLE thread only keeps the worker's CPU busy while the caller still
 * signals. Built by wake_cost.py with the system's cc (Linux). */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

enum { CALLER_WAKES, WATCHER_WAKES, KEEPER };
static atomic_long request, answer;
static atomic_int stop, sleeping;
static int mode;
static pthread_t worker, watcher;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static double caller_cost;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void signal_worker(void) {
    pthread_mutex_lock(&lock);
    pthread_cond_signal(&wake);
    pthread_mutex_unlock(&lock);
}

static void *work(void *unused) {  /* always sleeps between requests */
    long seen = 0;
    while (!atomic_load(&stop)) {
        pthread_mutex_lock(&lock);
        atomic_store(&sleeping, 1);
        while (atomic_load(&request) == seen && !atomic_load(&stop)) pthread_cond_wait(&wake, &lock);
        atomic_store(&sleeping, 0);
        pthread_mutex_unlock(&lock);
        seen = atomic_load(&request);
        atomic_store(&answer, seen);
    }
    return unused;
}

static void *watch(void *unused) {
    struct sched_param p = {0};
    sched_setscheduler(0, SCHED_IDLE, &p);
    long seen = 0;
    while (!atomic_load(&stop)) {
        long r = atomic_load(&request);
        if (r != seen) {
            seen = r;
            if (mode == WATCHER_WAKES && atomic_load(&sleeping)) signal_worker();
        } else {
            sched_yield();
        }
    }
    return unused;
}

void start(int how) {
    mode = how;
    atomic_store(&stop, 0);
    pthread_create(&worker, 0, work, 0);
    if (mode != CALLER_WAKES) pthread_create(&watcher, 0, watch, 0);
}

void finish(void) {
    atomic_store(&stop, 1);
    signal_worker();
    pthread_join(worker, 0);
    if (mode != CALLER_WAKES) pthread_join(watcher, 0);
}

/* Seconds from handing the worker a request to seeing its answer. */
double round_trip(void) {
    double t = now();
    long r = atomic_fetch_add(&request, 1) + 1;
    if (mode != WATCHER_WAKES) signal_worker();
    caller_cost = now() - t;
    while (atomic_load(&answer) != r) _mm_pause();
    return now() - t;
}

/* Seconds the last round_trip spent before it could go on with its own work. */
double last_caller_cost(void) { return caller_cost; }
