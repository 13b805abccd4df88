/*
 * Soak test of libcellpose (issue 20): WORKERS threads, each with its own session on one
 * shared model, segment FRAMES frames each of mixed sizes (64×64 … 512×512) and pixel types
 * (u8, u16, f32), as acquisition software running several cameras would. Checks that
 *
 *   - every frame's labels and object count equal a single-threaded run's on the same frame;
 *   - memory does not grow once every session has seen every frame size (sessions keep
 *     their buffers for the next frame; a leak or a buffer that grows per frame would show
 *     here): the heap in use, counted by the allocator, and the resident set.
 *
 *   soak MODEL.onnx IMAGE.png [FRAMES [WORKERS]]      (defaults 500 and 4)
 *
 * Frames are cut from IMAGE (wrapping around its edges) at sizes and offsets drawn from a
 * fixed seed, so every run sees the same frames. Built plain and with AddressSanitizer
 * (ctest label "soak"). Prints what it measured; exits non-zero on any mismatch, error or
 * growth.
 */
#define _POSIX_C_SOURCE 200809L /* pthread_barrier_t */
#include <cellpose.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__SANITIZE_ADDRESS__)
/* From <sanitizer/allocator_interface.h>, which not every compiler installs. */
size_t __sanitizer_get_current_allocated_bytes(void);
#elif defined(__GLIBC__)
#include <malloc.h>
#endif

#include "png_image.h"

/* Distinct frames; workers draw from them, so each frame is compared many times. */
enum { DISTINCT = 24, MIN_SIDE = 64, MAX_SIDE = 512 };

/* Heap bytes in use (every block malloc handed out and not freed, the library's included)
 * may differ this much between warm-up and the end (measured: -2,014 to +429 kB, from the
 * plans' tensor stashes as runs of several sessions coincide): a leak of one 64×64 label
 * buffer (16 kB) a frame is 24 MB over the 1,500 frames after warm-up. */
static const long HEAP_GROWTH_LIMIT_KB = 4 * 1024;
/* Resident memory may grow this much (about 5% of what 4 sessions hold): as frame sizes
 * alternate, glibc keeps freed blocks in its per-thread arenas rather than returning them at
 * once, which the heap count above does not see (measured: +22 MB over 1,500 frames with
 * the heap in use flat). A leak shows in the heap count first. */
static const long RSS_GROWTH_LIMIT_KB = 32 * 1024;

typedef struct frame {
  uint32_t width, height, pixel_type;
  void *pixels;
  uint32_t *expected; /* single-threaded labels */
  uint32_t expected_n;
} frame;

static frame frames[DISTINCT];
/* Memory is read while every worker waits (no frame in flight) at these checkpoints: the
 * end of each quarter of the run. The first quarter is the warm-up (every session has seen
 * every frame size and the allocator's arenas have settled); the heap must not grow after
 * it. */
enum { CHECKPOINTS = 4 };
static pthread_barrier_t reached, measured, lockstep;

/* A small deterministic generator (the frames and each worker's order). */
static uint32_t next(uint64_t *state) {
  *state = *state * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(*state >> 33);
}

static size_t bytes_per_sample(uint32_t pixel_type) {
  return pixel_type == CP_PIXEL_U8 ? 1 : pixel_type == CP_PIXEL_U16 ? 2 : 4;
}

/* Frame k: a crop of `img` at a drawn size and offset, in pixel type k % 3. */
static frame make_frame(const gray_image *img, int k, uint64_t *rng) {
  frame f = {0};
  f.width = MIN_SIDE + next(rng) % (MAX_SIDE - MIN_SIDE + 1);
  f.height = MIN_SIDE + next(rng) % (MAX_SIDE - MIN_SIDE + 1);
  if (k == 0) f.width = f.height = MAX_SIDE; /* the largest size is always among them */
  f.pixel_type = (uint32_t)(k % 3);
  uint32_t x0 = next(rng) % img->width, y0 = next(rng) % img->height;
  size_t n = (size_t)f.width * f.height;
  f.pixels = malloc(n * bytes_per_sample(f.pixel_type));
  for (uint32_t y = 0; y < f.height; y++)
    for (uint32_t x = 0; x < f.width; x++) {
      size_t src = (size_t)((y0 + y) % img->height) * img->width + (x0 + x) % img->width;
      uint32_t v = img->bytes_per_sample == 2 ? ((uint16_t *)img->pixels)[src] >> 8
                                              : ((uint8_t *)img->pixels)[src];
      size_t i = (size_t)y * f.width + x;
      if (f.pixel_type == CP_PIXEL_U8) ((uint8_t *)f.pixels)[i] = (uint8_t)v;
      else if (f.pixel_type == CP_PIXEL_U16) ((uint16_t *)f.pixels)[i] = (uint16_t)(v * 257 + 3);
      else ((float *)f.pixels)[i] = (float)v * 0.37f - 12.0f;
    }
  return f;
}

static int segment(cp_session *s, const frame *f, uint32_t *labels, uint32_t *n_objects) {
  cp_frame in = {
      .struct_size = sizeof(cp_frame),
      .data = f->pixels,
      .data_len = (size_t)f->width * f->height * bytes_per_sample(f->pixel_type),
      .row_stride = (size_t)f->width * bytes_per_sample(f->pixel_type),
      .width = f->width,
      .height = f->height,
      .pixel_type = f->pixel_type,
      .channels = 1,
      .layout = CP_LAYOUT_PLANAR,
  };
  cp_output out = {.struct_size = sizeof(cp_output),
                   .labels = labels,
                   .labels_len = (size_t)f->width * f->height,
                   .label_type = CP_LABELS_U32};
  cp_status st = cp_session_segment(s, &in, &out);
  if (st != CP_OK) {
    fprintf(stderr, "cp_session_segment (%ux%u): %s: %s\n", f->width, f->height,
            cp_status_name(st), cp_last_error_message());
    return -1;
  }
  *n_objects = out.n_objects;
  return 0;
}

typedef struct worker {
  const cp_model *model;
  int id, frames;
  int segmented, errors, mismatches;
} worker;

/* Frame number (in every worker) at the end of checkpoint `c` (1-based). */
static int checkpoint_frame(int frames, int c) { return frames * c / CHECKPOINTS; }

static void *worker_main(void *arg) {
  worker *w = arg;
  cp_session *s = NULL;
  if (cp_session_new(w->model, NULL, &s) != CP_OK) {
    fprintf(stderr, "cp_session_new: %s\n", cp_last_error_message());
    exit(1); /* the other workers would wait for this one at every barrier */
  }
  uint32_t *labels = malloc((size_t)MAX_SIDE * MAX_SIDE * sizeof *labels);
  uint64_t rng = 1000 + (uint64_t)w->id;
  int i = 0;
  for (int c = 1; c <= CHECKPOINTS; c++) {
    for (; i < checkpoint_frame(w->frames, c); i++) {
      /* Warm-up: every distinct frame once, all workers on the same frame at the same time
       * (the most runs of one network plan in flight at once, which sizes the plan's pool of
       * intermediate tensors for the rest of the run); then frames drawn at random. */
      uint32_t k;
      if (i < DISTINCT) {
        pthread_barrier_wait(&lockstep);
        k = (uint32_t)i;
      } else {
        k = next(&rng) % DISTINCT;
      }
      const frame *f = &frames[k];
      uint32_t n = 0;
      if (segment(s, f, labels, &n) != 0) {
        w->errors++;
        continue;
      }
      w->segmented++;
      if (n != f->expected_n ||
          memcmp(labels, f->expected, (size_t)f->width * f->height * sizeof *labels) != 0)
        w->mismatches++;
    }
    pthread_barrier_wait(&reached);  /* no frame in flight: the main thread reads memory */
    pthread_barrier_wait(&measured); /* sessions are still alive while it does */
  }
  free(labels);
  cp_session_free(s);
  return NULL;
}

/* Resident set size of this process in kB (Linux /proc). */
static long resident_kb(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f || fscanf(f, "%ld %ld", &pages, &resident) != 2) {
    if (f) fclose(f);
    return -1;
  }
  fclose(f);
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Bytes of heap in use (allocated, not freed) in kB, from the allocator: ASan's when built
 * with it, glibc's otherwise; -1 where neither is there. */
static long heap_in_use_kb(void) {
#if defined(__SANITIZE_ADDRESS__)
  return (long)(__sanitizer_get_current_allocated_bytes() / 1024);
#elif defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 33)
  struct mallinfo2 m = mallinfo2();
  return (long)((m.uordblks + m.hblkhd) / 1024);
#else
  return -1;
#endif
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0); /* progress lines as they come, also into a log file */
  if (argc < 3 || argc > 5) {
    fprintf(stderr, "usage: %s MODEL.onnx IMAGE.png [FRAMES [WORKERS]]\n", argv[0]);
    return 2;
  }
  int per_worker = argc > 3 ? atoi(argv[3]) : 500;
  int n_workers = argc > 4 ? atoi(argv[4]) : 4;
  /* The warm-up (every distinct frame once) must fit in the first quarter. */
  if (per_worker < CHECKPOINTS * DISTINCT || n_workers < 1 || n_workers > 64) {
    fprintf(stderr, "FRAMES must be at least %d, WORKERS 1 to 64\n", CHECKPOINTS * DISTINCT);
    return 2;
  }
  gray_image img;
  if (gray_image_read_png(argv[2], &img) != 0) return 2;
  cp_model *model = NULL;
  if (cp_model_load(argv[1], &model) != CP_OK) {
    fprintf(stderr, "cannot load %s: %s\n", argv[1], cp_last_error_message());
    return 2;
  }

  /* The single-threaded run every worker's labels must equal. */
  uint64_t rng = 7;
  cp_session *single = NULL;
  if (cp_session_new(model, NULL, &single) != CP_OK) return 2;
  long objects = 0;
  for (int k = 0; k < DISTINCT; k++) {
    frames[k] = make_frame(&img, k, &rng);
    frames[k].expected = malloc((size_t)frames[k].width * frames[k].height * sizeof(uint32_t));
    if (segment(single, &frames[k], frames[k].expected, &frames[k].expected_n) != 0) return 1;
    objects += frames[k].expected_n;
  }
  cp_session_free(single);
  printf("%d distinct frames (u8, u16, f32; %d to %d px a side), %ld objects single-threaded\n",
         DISTINCT, MIN_SIDE, MAX_SIDE, objects);

  pthread_barrier_init(&reached, NULL, (unsigned)n_workers + 1);
  pthread_barrier_init(&measured, NULL, (unsigned)n_workers + 1);
  pthread_barrier_init(&lockstep, NULL, (unsigned)n_workers);
  worker *workers = calloc((size_t)n_workers, sizeof *workers);
  pthread_t *threads = calloc((size_t)n_workers, sizeof *threads);
  for (int i = 0; i < n_workers; i++) {
    workers[i] = (worker){.model = model, .id = i, .frames = per_worker};
    if (pthread_create(&threads[i], NULL, worker_main, &workers[i]) != 0) return 2;
  }
  long heap[CHECKPOINTS], rss[CHECKPOINTS];
  printf("frames a worker: heap in use / resident kB\n");
  for (int c = 0; c < CHECKPOINTS; c++) {
    pthread_barrier_wait(&reached);
    heap[c] = heap_in_use_kb();
    rss[c] = resident_kb();
    printf("%6d: %ld / %ld\n", checkpoint_frame(per_worker, c + 1), heap[c], rss[c]);
    pthread_barrier_wait(&measured);
  }
  int errors = 0, mismatches = 0, segmented = 0;
  for (int i = 0; i < n_workers; i++) {
    pthread_join(threads[i], NULL);
    errors += workers[i].errors;
    mismatches += workers[i].mismatches;
    segmented += workers[i].segmented;
  }
  long heap_growth = heap[CHECKPOINTS - 1] - heap[0], rss_growth = rss[CHECKPOINTS - 1] - rss[0];
  printf("%d workers x %d frames: %d segmented, %d errors, %d differ from single-threaded\n",
         n_workers, per_worker, segmented, errors, mismatches);
  printf("after warm-up (the first quarter): heap in use grew %ld kB (limit %ld), resident "
         "memory %ld kB (limit %ld)\n",
         heap_growth, HEAP_GROWTH_LIMIT_KB, rss_growth, RSS_GROWTH_LIMIT_KB);
  if (heap[0] < 0)
    printf("heap check skipped: this C library does not count the heap in use (glibc >= 2.33 "
           "or AddressSanitizer does)\n");

  for (int k = 0; k < DISTINCT; k++) {
    free(frames[k].pixels);
    free(frames[k].expected);
  }
  free(workers);
  free(threads);
  free(img.pixels);
  cp_model_free(model);
  int ok = errors == 0 && mismatches == 0 && segmented == n_workers * per_worker &&
           rss[0] > 0 && rss_growth <= RSS_GROWTH_LIMIT_KB && heap_growth <= HEAP_GROWTH_LIMIT_KB;
  printf("%s\n", ok ? "soak passed" : "soak FAILED");
  return ok ? 0 : 1;
}
