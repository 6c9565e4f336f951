"""The default bounds on one dataset, shared by the loaders, the service's settings and the CLI's options.

Plain numbers in a module that imports nothing, so that `debias --help` can show them without loading numpy.
"""
MAX_PIXELS = 4096 * 4096  # one image, width x height
MAX_SAMPLES = 200_000
MAX_DECODED_BYTES = 4 << 30
MAX_EXPANSION = 200.0
MAX_ZIP_ENTRIES = 200_000
MAX_ZIP_BYTES = 4 << 30
