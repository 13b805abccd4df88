// acquisition_loop: simulates a microscope acquisition loop calling libcellpose frame by
// frame, and prints per-frame object counts and latency (median and 99th percentile).
//
//   acquisition_loop MODEL.onnx [FRAMES=50] [SIZE=512] [THREADS=1]
//
// Frames are generated: 16-bit fluorescence-like images of SIZE x SIZE pixels with a known
// number of bright nuclei (disks of 7 to 12 px radius with soft edges) on a noisy background.
#include <cellpose.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

void check(cp_status s, const char *what) {
  if (s != CP_OK) {
    throw std::runtime_error(std::string(what) + ": " + cp_status_name(s) + ": " +
                             cp_last_error_message());
  }
}

struct ModelDeleter {
  void operator()(cp_model *m) const { cp_model_free(m); }
};
struct SessionDeleter {
  void operator()(cp_session *s) const { cp_session_free(s); }
};

// xorshift64*: a small deterministic generator, so every run sees the same frames.
struct Rng {
  uint64_t state;
  uint64_t next() {
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545F4914F6CDD1DULL;
  }
  double uniform() { return (next() >> 11) * (1.0 / 9007199254740992.0); }
};

// Fills `frame` (size x size) with `n` non-overlapping disks; returns how many were placed.
int generate_frame(Rng &rng, int size, std::vector<uint16_t> &frame) {
  std::vector<float> img(size_t(size) * size);
  for (auto &v : img) v = 400.0f + 60.0f * float(rng.uniform());
  struct Disk {
    double y, x, r;
  };
  std::vector<Disk> disks;
  int wanted = 20 + int(rng.uniform() * 20);
  for (int tries = 0; tries < 2000 && int(disks.size()) < wanted; tries++) {
    Disk d{12 + rng.uniform() * (size - 24), 12 + rng.uniform() * (size - 24),
           7 + rng.uniform() * 5};
    bool free_spot = std::all_of(disks.begin(), disks.end(), [&](const Disk &o) {
      return std::hypot(o.y - d.y, o.x - d.x) > o.r + d.r + 3;
    });
    if (free_spot) disks.push_back(d);
  }
  for (const Disk &d : disks) {
    float bright = 1500.0f + 1500.0f * float(rng.uniform());
    int y0 = std::max(0, int(d.y - d.r - 2)), y1 = std::min(size, int(d.y + d.r + 3));
    int x0 = std::max(0, int(d.x - d.r - 2)), x1 = std::min(size, int(d.x + d.r + 3));
    for (int y = y0; y < y1; y++)
      for (int x = x0; x < x1; x++) {
        double r = std::hypot(y - d.y, x - d.x);
        double edge = std::clamp(d.r + 0.5 - r, 0.0, 1.0);  // soft, anti-aliased edge
        img[size_t(y) * size + x] += float(edge) * bright * float(0.85 + 0.15 * rng.uniform());
      }
  }
  frame.resize(img.size());
  for (size_t i = 0; i < img.size(); i++) frame[i] = uint16_t(std::min(img[i], 65535.0f));
  return int(disks.size());
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t k = size_t(std::ceil(p / 100.0 * v.size()));
  return v[std::min(v.size() - 1, k == 0 ? 0 : k - 1)];
}

}  // namespace

int main(int argc, char **argv) {
  if (argc < 2 || argc > 5) {
    std::fprintf(stderr, "usage: %s MODEL.onnx [FRAMES=50] [SIZE=512] [THREADS=1]\n", argv[0]);
    return 2;
  }
  const int frames = argc > 2 ? std::atoi(argv[2]) : 50;
  const int size = argc > 3 ? std::atoi(argv[3]) : 512;
  const unsigned threads = argc > 4 ? unsigned(std::atoi(argv[4])) : 1;
  if (frames < 1 || size < 32 || size > 8192 || threads < 1) {
    std::fprintf(stderr, "FRAMES >= 1, 32 <= SIZE <= 8192, THREADS >= 1\n");
    return 2;
  }
  try {
    cp_model *raw_model = nullptr;
    check(cp_model_load(argv[1], &raw_model), "cp_model_load");
    std::unique_ptr<cp_model, ModelDeleter> model(raw_model);

    cp_session_options opts;
    check(cp_session_options_init(&opts, sizeof opts), "cp_session_options_init");
    opts.threads = threads;
    opts.diameter_mode = CP_DIAMETER_PIXELS;
    opts.diameter = 20.0f;  // the generated nuclei are 14 to 24 px across
    cp_session *raw_session = nullptr;
    check(cp_session_new(model.get(), &opts, &raw_session), "cp_session_new");
    std::unique_ptr<cp_session, SessionDeleter> session(raw_session);

    // Before acquisition starts: optimise the network for this frame size.
    auto t0 = std::chrono::steady_clock::now();
    check(cp_session_prepare(session.get(), size, size, 1), "cp_session_prepare");
    double prepare_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("frame %dx%d u16, %u thread(s), prepare %.1f ms\n", size, size, threads,
                prepare_ms);

    Rng rng{0x9E3779B97F4A7C15ULL};
    std::vector<uint16_t> pixels;
    std::vector<uint16_t> labels(size_t(size) * size);
    std::vector<double> latency_ms;
    long total_found = 0, total_generated = 0;
    for (int i = 0; i < frames; i++) {
      int generated = generate_frame(rng, size, pixels);  // "the camera delivers a frame"
      cp_frame frame{};
      frame.struct_size = sizeof frame;
      frame.data = pixels.data();
      frame.data_len = pixels.size() * sizeof(uint16_t);
      frame.row_stride = size_t(size) * sizeof(uint16_t);
      frame.width = uint32_t(size);
      frame.height = uint32_t(size);
      frame.pixel_type = CP_PIXEL_U16;
      frame.channels = 1;
      frame.layout = CP_LAYOUT_PLANAR;
      cp_output out{};
      out.struct_size = sizeof out;
      out.labels = labels.data();
      out.labels_len = labels.size();
      out.label_type = CP_LABELS_U16;

      auto start = std::chrono::steady_clock::now();
      check(cp_session_segment(session.get(), &frame, &out), "cp_session_segment");
      double ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count();
      latency_ms.push_back(ms);
      total_found += out.n_objects;
      total_generated += generated;
      std::printf("frame %3d: %3u objects (%3d generated) %8.1f ms\n", i, out.n_objects,
                  generated, ms);
    }
    std::printf("frames %d: latency median %.1f ms, p99 %.1f ms, max %.1f ms; objects %ld found "
                "/ %ld generated\n",
                frames, percentile(latency_ms, 50), percentile(latency_ms, 99),
                *std::max_element(latency_ms.begin(), latency_ms.end()), total_found,
                total_generated);
  } catch (const std::exception &e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
