"""The compiled parts: Cython accelerators of hot parsers, each with a pure-Python reference
(and fallback) in the same package. Everything else about the package is in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("kubeflume_agent.protocols._syslog_fast", ["agent/kubeflume_agent/protocols/_syslog_fast.pyx"])],
        compiler_directives={"language_level": "3"},
    ),
)
