"""Builds the compiled rewriter scans (proxy/_scan.pyx); everything else is in pyproject.toml.

The extension is optional: where no C compiler is found the install still succeeds and the
rewriter runs its pure-Python passes (same output, several times slower; `serve` says so).
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = cythonize(
    [Extension("proxy._scan", ["proxy/_scan.pyx"])],
    compiler_directives={"language_level": "3"},
)
for extension in extensions:
    extension.optional = True  # set after cythonize: it builds new Extensions and drops the flag

setup(ext_modules=extensions)
