"""The embedded demo: a generated chest-radiograph-like cohort whose truth is known, and two model versions.

Everything is seeded. The cohort is written as real files (16-bit PNG images, 8-bit PNG masks, a manifest
CSV) and read back through the same loaders as user data.
"""
