/*
 * segment_image: segments one image file with libcellpose and prints its objects.
 *
 *   segment_image MODEL.onnx IMAGE.png [DIAMETER_PX]
 *
 * Reads an 8- or 16-bit PNG (colour is converted to gray), segments it with the reference
 * defaults (or the given object diameter), and prints one line per object.
 */
#include <cellpose.h>
#include <stdio.h>
#include <stdlib.h>

#include "png_image.h"

static int check(cp_status s, const char *what) {
  if (s != CP_OK) {
    fprintf(stderr, "%s failed: %s: %s\n", what, cp_status_name(s), cp_last_error_message());
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) {
    fprintf(stderr, "usage: %s MODEL.onnx IMAGE.png [DIAMETER_PX]\n", argv[0]);
    return 2;
  }
  if (cp_abi_version() != CELLPOSE_ABI_VERSION) {
    fprintf(stderr, "libcellpose ABI %u, this program was built for %u\n", cp_abi_version(),
            (unsigned)CELLPOSE_ABI_VERSION);
    return 1;
  }
  gray_image img;
  if (gray_image_read_png(argv[2], &img) != 0) return 1;

  int rc = 1;
  cp_model *model = NULL;
  cp_session *session = NULL;
  uint32_t *labels = NULL;
  cp_object *objects = NULL;

  if (check(cp_model_load(argv[1], &model), "cp_model_load")) goto done;
  cp_session_options opts;
  if (check(cp_session_options_init(&opts, sizeof opts), "cp_session_options_init")) goto done;
  if (argc == 4) {
    opts.diameter_mode = CP_DIAMETER_PIXELS;
    opts.diameter = (float)atof(argv[3]);
  }
  if (check(cp_session_new(model, &opts, &session), "cp_session_new")) goto done;

  cp_frame frame = {
      .struct_size = sizeof(cp_frame),
      .data = img.pixels,
      .data_len = (size_t)img.width * img.height * img.bytes_per_sample,
      .row_stride = (size_t)img.width * img.bytes_per_sample,
      .width = img.width,
      .height = img.height,
      .pixel_type = img.bytes_per_sample == 2 ? CP_PIXEL_U16 : CP_PIXEL_U8,
      .channels = 1,
      .layout = CP_LAYOUT_PLANAR,
  };
  size_t npix = (size_t)img.width * img.height;
  labels = malloc(npix * sizeof *labels);
  if (!labels) goto done;
  cp_output out = {
      .struct_size = sizeof(cp_output),
      .labels = labels,
      .labels_len = npix,
      .label_type = CP_LABELS_U32,
  };
  if (check(cp_session_segment(session, &frame, &out), "cp_session_segment")) goto done;

  size_t count = 0;
  if (check(cp_session_objects(session, NULL, 0, sizeof(cp_object), &count), "cp_session_objects"))
    goto done;
  objects = malloc((count ? count : 1) * sizeof *objects);
  if (!objects) goto done;
  if (check(cp_session_objects(session, objects, count, sizeof(cp_object), &count),
            "cp_session_objects"))
    goto done;

  printf("%s: %ux%u, %u objects, diameter used %.1f px\n", argv[2], img.width, img.height,
         out.n_objects, out.diameter_used);
  printf("label\tarea\tcentroid_y\tcentroid_x\tbbox(y0,x0,y1,x1)\n");
  for (size_t i = 0; i < count; i++) {
    const cp_object *o = &objects[i];
    printf("%u\t%llu\t%.1f\t%.1f\t%u,%u,%u,%u\n", o->label, (unsigned long long)o->area,
           o->centroid_y, o->centroid_x, o->bbox_y0, o->bbox_x0, o->bbox_y1, o->bbox_x1);
  }
  rc = 0;
done:
  free(objects);
  free(labels);
  cp_session_free(session);
  cp_model_free(model);
  free(img.pixels);
  return rc;
}
