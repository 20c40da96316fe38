"""Builds the optional compiled core, feed_server/protocol/compiled_book.pyx (everything else is in pyproject.toml).

The extension is optional, as python-websockets' speedups are: without a C++ compiler (or zlib's header) the
build warns and the install goes on, and the product runs on the pure-Python book (feed_server.protocol.core
says which). The SHA-256 of the .pyx is compiled in, so a build older than its source is told apart.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

SOURCE = "feed_server/protocol/compiled_book.pyx"

extension = Extension(
    "feed_server.protocol.compiled_book",
    [SOURCE],
    language="c++",
    libraries=["z"],
    define_macros=[("COMPILED_BOOK_SOURCE_SHA256", f'"{hashlib.sha256(Path(SOURCE).read_bytes()).hexdigest()}"')],
    extra_compile_args=["-O2", "-g0"],
)
extensions = cythonize([extension], build_dir="build/cython", quiet=True)
for compiled in extensions:
    compiled.optional = True  # (set after cythonize, which makes new Extensions without it)

setup(ext_modules=extensions)
