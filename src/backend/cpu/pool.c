/* pool.c: a persistent thread pool with low dispatch cost. Workers spin briefly on a generation
 * counter (a decode step launches hundreds of small kernels back to back), then sleep on a
 * condition variable so an idle engine burns no CPU. */
#include "backend/cpu/cpu.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct job {
  mlc_kfn fn;
  void *const *bufs;
  const int64_t *ip;
  const float *fp;
  int64_t grid;
} job;

struct mlc_pool {
  int n; /* threads including the caller */
  pthread_t *th;
  job j;
  atomic_uint gen;     /* bumped per job */
  atomic_int pending;  /* workers still running the current job */
  atomic_bool stop;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  atomic_int sleepers;
};

typedef struct warg {
  mlc_pool *p;
  int idx;
} warg;

static void run_slice(mlc_pool *p, int idx) {
  int64_t g = p->j.grid, a = g * idx / p->n, b = g * (idx + 1) / p->n;
  if (a < b)
    p->j.fn(p->j.bufs, p->j.ip, p->j.fp, a, b);
}

static void *worker(void *arg) {
  warg *w = arg;
  mlc_pool *p = w->p;
  int idx = w->idx;
  free(w);
  unsigned seen = 0; /* the generation at creation: a job posted before this thread runs is still seen */
  for (;;) {
    int spins = 0;
    while (atomic_load_explicit(&p->gen, memory_order_acquire) == seen && !atomic_load(&p->stop)) {
      if (++spins < 20000) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        continue;
      }
      pthread_mutex_lock(&p->mu);
      atomic_fetch_add(&p->sleepers, 1);
      while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
        pthread_cond_wait(&p->cv, &p->mu);
      atomic_fetch_sub(&p->sleepers, 1);
      pthread_mutex_unlock(&p->mu);
    }
    if (atomic_load(&p->stop))
      return NULL;
    seen = atomic_load(&p->gen);
    run_slice(p, idx);
    atomic_fetch_sub_explicit(&p->pending, 1, memory_order_release);
  }
}

mlc_status mlc_pool_new(int nthreads, mlc_pool **out) {
  *out = NULL;
  if (nthreads <= 0) {
    long c = sysconf(_SC_NPROCESSORS_ONLN);
    nthreads = c > 0 ? (int)c : 1;
  }
  mlc_pool *p = calloc(1, sizeof *p);
  if (!p)
    return mlc_err(MLC_ERR_NOMEM, "out of memory creating the thread pool");
  p->n = nthreads;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->cv, NULL);
  p->th = calloc((size_t)nthreads, sizeof *p->th);
  if (!p->th) {
    free(p);
    return mlc_err(MLC_ERR_NOMEM, "out of memory creating the thread pool");
  }
  for (int i = 1; i < nthreads; i++) {
    warg *w = malloc(sizeof *w);
    if (w) {
      w->p = p;
      w->idx = i;
    }
    if (!w || pthread_create(&p->th[i], NULL, worker, w) != 0) {
      free(w);
      p->n = i;
      mlc_pool_free(p);
      return mlc_err(MLC_ERR_DEVICE, "cannot start thread %d of %d", i, nthreads);
    }
  }
  *out = p;
  return MLC_OK;
}

void mlc_pool_free(mlc_pool *p) {
  if (!p)
    return;
  atomic_store(&p->stop, true);
  pthread_mutex_lock(&p->mu);
  pthread_cond_broadcast(&p->cv);
  pthread_mutex_unlock(&p->mu);
  for (int i = 1; i < p->n; i++)
    pthread_join(p->th[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->cv);
  free(p->th);
  free(p);
}

int mlc_pool_threads(const mlc_pool *p) { return p->n; }

void mlc_pool_run(mlc_pool *p, mlc_kfn fn, void *const *bufs, const int64_t *ip, const float *fp, int64_t grid) {
  if (p->n == 1 || grid < 2) {
    if (grid > 0)
      fn(bufs, ip, fp, 0, grid);
    return;
  }
  p->j = (job){fn, bufs, ip, fp, grid};
  atomic_store(&p->pending, p->n - 1);
  atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
  if (atomic_load(&p->sleepers) > 0) {
    pthread_mutex_lock(&p->mu);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
  }
  run_slice(p, 0);
  /* spin while the workers finish; past a few microseconds, yield: a worker that lost its core to
   * another process gets it back sooner than by spinning out our time slice */
  for (int spins = 0; atomic_load_explicit(&p->pending, memory_order_acquire) > 0; spins++) {
#if defined(__x86_64__) || defined(__i386__)
    if (spins < 4000) {
      __builtin_ia32_pause();
      continue;
    }
#endif
    sched_yield();
  }
}
