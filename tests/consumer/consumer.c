/* Out-of-tree consumer: links the installed libcellpose, segments a generated frame. */
#include <cellpose.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

enum { W = 128, H = 128 };

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s MODEL.onnx|nuclei|cyto\n", argv[0]);
    return 2;
  }
  if (cp_abi_version() != CELLPOSE_ABI_VERSION) return 1;
  static uint8_t px[W * H];
  static uint32_t labels[W * H];
  /* Four bright disks of radius ~9.5 on a dark, textured background. Their edges fall off
   * over 3 px (r 8 to 11), as optics blur every real nucleus: the shipped model does not
   * take hard-edged, perfectly flat disks for nuclei. */
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      int dy = (y % 64) - 32, dx = (x % 64) - 32, r2 = dx * dx + dy * dy;
      int bg = 20 + (x * 7 + y * 13) % 9;
      int v = r2 <= 64 ? 200 : r2 >= 121 ? bg : (200 * (121 - r2) + bg * (r2 - 64)) / 57;
      px[y * W + x] = (uint8_t)v;
    }
  cp_model *m = NULL;
  cp_session *s = NULL;
  /* A file name, or the name of a shipped model (found through CELLPOSE_MODEL_DIR). */
  cp_status st = strchr(argv[1], '.') ? cp_model_load(argv[1], &m) : cp_model_load_shipped(argv[1], &m);
  cp_session_options o;
  if (st == CP_OK) st = cp_session_options_init(&o, sizeof o);
  o.diameter_mode = CP_DIAMETER_PIXELS;
  o.diameter = 18;
  if (st == CP_OK) st = cp_session_new(m, &o, &s);
  cp_frame f = {.struct_size = sizeof f, .data = px, .data_len = sizeof px, .row_stride = W,
                .width = W, .height = H, .pixel_type = CP_PIXEL_U8, .channels = 1,
                .layout = CP_LAYOUT_PLANAR};
  cp_output out = {.struct_size = sizeof out, .labels = labels, .labels_len = W * H,
                   .label_type = CP_LABELS_U32};
  if (st == CP_OK) st = cp_session_segment(s, &f, &out);
  if (st != CP_OK) fprintf(stderr, "%s: %s\n", cp_status_name(st), cp_last_error_message());
  else printf("libcellpose %s: %u objects in a generated %dx%d frame\n", cp_version(),
              out.n_objects, W, H);
  cp_session_free(s);
  cp_model_free(m);
  return st == CP_OK && out.n_objects >= 1 ? 0 : 1;
}
