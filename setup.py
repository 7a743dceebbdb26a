"""The compiled parts: Cython accelerators of hot decoders (agent/kubeflume_agent/protocols/_*.pyx),
each with a pure-Python reference in the same package. Everything else about the package is in
pyproject.toml.

Without a C compiler (or the Python headers) the package still installs, with a warning, and
runs on the pure-Python decoders: the same results, at about twice the CPU per syslog event.
"""

import logging

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

BUILD_ERRORS = (CCompilerError, ExecError, PlatformError, OSError)


class OptionalBuildExt(build_ext):
    def run(self) -> None:
        try:
            super().run()
        except BUILD_ERRORS as error:
            logging.warning("kubeflume: accelerators not compiled (%s); the pure-Python decoders will run", error)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except BUILD_ERRORS as error:
            logging.warning("kubeflume: %s not compiled (%s); its pure-Python reference will run", ext.name, error)


setup(
    ext_modules=cythonize(
        [Extension(f"kubeflume_agent.protocols.{name}", [f"agent/kubeflume_agent/protocols/{name}.pyx"])
         for name in ("_syslog_fast", "_rpc_fast", "_json_fast")],
        compiler_directives={"language_level": "3"},
    ),
    cmdclass={"build_ext": OptionalBuildExt},
)
