/*
 * png_image.h: reads a PNG file into one gray plane (8- or 16-bit samples, native
 * endianness) for the cellpose examples and C tests. Header-only; link with libpng.
 * Colour images are converted to gray (libpng's default weights), alpha is dropped,
 * palette and low-bit-depth images are expanded to 8 bits.
 */
#ifndef CELLPOSE_EXAMPLE_PNG_IMAGE_H
#define CELLPOSE_EXAMPLE_PNG_IMAGE_H

#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct gray_image {
  uint32_t width;
  uint32_t height;
  uint32_t bytes_per_sample; /* 1 or 2 */
  void *pixels;              /* width * height samples, row-major; free() it */
} gray_image;

/* Returns 0 on success (fill *out), -1 on failure (message on stderr). */
static int gray_image_read_png(const char *path, gray_image *out) {
  out->pixels = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return -1;
  }
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  png_bytep *volatile rows = NULL;
  if (!png || !info || setjmp(png_jmpbuf(png))) {
    fprintf(stderr, "%s: not a readable PNG file\n", path);
    free(rows);
    free(out->pixels);
    out->pixels = NULL;
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    return -1;
  }
  png_init_io(png, f);
  png_read_info(png, info);
  int color = png_get_color_type(png, info);
  int depth = png_get_bit_depth(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (color & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
  if (color == PNG_COLOR_TYPE_PALETTE || (color & PNG_COLOR_MASK_COLOR))
    png_set_rgb_to_gray_fixed(png, 1, -1, -1);
  const uint16_t one = 1;
  if (depth == 16 && *(const uint8_t *)&one == 1) png_set_swap(png); /* to little-endian */
  png_read_update_info(png, info);
  out->width = png_get_image_width(png, info);
  out->height = png_get_image_height(png, info);
  out->bytes_per_sample = depth == 16 ? 2 : 1;
  size_t row_bytes = png_get_rowbytes(png, info);
  if (row_bytes != (size_t)out->width * out->bytes_per_sample) {
    png_error(png, "unexpected row size after conversion to gray");
  }
  out->pixels = malloc(row_bytes * out->height);
  rows = malloc(sizeof(png_bytep) * out->height);
  if (!out->pixels || !rows) png_error(png, "out of memory");
  for (uint32_t y = 0; y < out->height; y++) rows[y] = (png_bytep)out->pixels + y * row_bytes;
  png_read_image(png, rows);
  png_read_end(png, NULL);
  free(rows);
  png_destroy_read_struct(&png, &info, NULL);
  fclose(f);
  return 0;
}

#endif
