"""The one compiled part: MD5 of many buffers at once (xnatd/store/_md5lanes.c).

Optional: where it cannot be built (no C compiler), xnatd installs without it and hashes
with hashlib, at about a fifth of the rate for a batch of received files.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("xnatd.store._md5lanes", ["xnatd/store/_md5lanes.c"], optional=True),
    ]
)
