/* How an idle worker thread should wait, measured from Python by dev/idle_wait.py:
 * spinning on sched_yield(), spinning on the pause instruction (as GNU OpenMP does), or
 * sleeping on a condition variable. Built by idle_wait.py with the system's cc. */
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

enum { YIELD, PAUSE, SLEEP };
static atomic_long request, answer;
static atomic_int stop;
static int how;
static pthread_t worker;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *work(void *unused) {
    long seen = 0;
    while (!atomic_load(&stop)) {
        if (how == SLEEP) {
            pthread_mutex_lock(&lock);
            while (atomic_load(&request) == seen && !atomic_load(&stop)) pthread_cond_wait(&wake, &lock);
            pthread_mutex_unlock(&lock);
        } else {
            while (atomic_load(&request) == seen && !atomic_load(&stop)) {
                if (how == YIELD) sched_yield();
                else for (int i = 0; i < 64; i++) _mm_pause();
            }
        }
        seen = atomic_load(&request);
        atomic_store(&answer, seen);
    }
    return unused;
}

void start(int mode) {
    how = mode;
    atomic_store(&stop, 0);
    pthread_create(&worker, 0, work, 0);
}

void finish(void) {
    atomic_store(&stop, 1);
    pthread_mutex_lock(&lock);
    pthread_cond_broadcast(&wake);
    pthread_mutex_unlock(&lock);
    pthread_join(worker, 0);
}

/* Seconds from handing the worker a request to seeing its answer. */
double round_trip(void) {
    double t = now();
    long r = atomic_fetch_add(&request, 1) + 1;
    if (how == SLEEP) {
        pthread_mutex_lock(&lock);
        pthread_cond_signal(&wake);
        pthread_mutex_unlock(&lock);
    }
    while (atomic_load(&answer) != r) _mm_pause();
    return now() - t;
}
