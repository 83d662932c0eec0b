"""Limits that keep image decoding safe, in a module light enough for argument parsers to import."""

DEFAULT_MAX_PIXELS = 178_956_970  # load_image's limit: PIL's hard decompression-bomb limit (2 * MAX_IMAGE_PIXELS)
