"""The compiled parts: Cython accelerators of hot parsers, each with a pure-Python reference
(and fallback) in the same package. Everything else about the package is in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension(f"kubeflume_agent.protocols.{name}", [f"agent/kubeflume_agent/protocols/{name}.pyx"])
         for name in ("_syslog_fast", "_rpc_fast")],
        compiler_directives={"language_level": "3"},
    ),
)
