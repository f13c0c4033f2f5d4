"""Build hooks: the cffi libc layer and the native pause holder.

- cffi compiles minirun/libc/declarations.py into the ``minirun.libc._libc``
  extension (``cffi_modules``).
- build_ext then compiles minirun/pause/pause.c with gcc into
  minirun/pause/bin/minirun-pause, the small static binary pods use as their
  holder (docs/pause.md). With ``pip install -e .`` it lands in the source
  tree (next to the cffi module); with ``pip install .`` in the wheel.
"""

import os
import shlex
import subprocess

from setuptools import setup
from setuptools.command.build_ext import build_ext

PAUSE_SOURCE = os.path.join("minirun", "pause", "pause.c")
PAUSE_BINARY = os.path.join("minirun", "pause", "bin", "minirun-pause")


class BuildExtWithPause(build_ext):
    """build_ext, then ``cc -Os -static`` for the pause holder."""

    def run(self):
        super().run()
        self.build_pause()

    def pause_target(self):
        # editable installs build in place, like the cffi extension
        return PAUSE_BINARY if self.inplace else os.path.join(self.build_lib, PAUSE_BINARY)

    def build_pause(self):
        target = self.pause_target()  # always rebuilt: it takes a tenth of a second
        os.makedirs(os.path.dirname(target), exist_ok=True)
        cc = shlex.split(os.environ.get("CC", "cc"))
        version = f'-DMINIRUN_VERSION="{self.distribution.get_version()}"'
        common = ["-Os", "-s", "-Wall", version, "-o", target, PAUSE_SOURCE]
        # Static: no ld.so and no libc.so to map, which keeps the RSS near 0.7 MiB
        # instead of 1.2 MiB. Needs libc.a (Debian: libc6-dev); else link dynamically.
        try:
            self.spawn(cc + ["-static"] + common)
        except Exception:
            self.warn("static link of the pause holder failed; linking it dynamically")
            self.spawn(cc + common)
        subprocess.run([os.path.abspath(target), "-v"], check=True, stdout=subprocess.DEVNULL)

    def get_outputs(self):
        # in place, the parent lists get_output_mapping()'s keys, which hold it already
        outputs = super().get_outputs()
        built = os.path.join(self.build_lib, PAUSE_BINARY)
        return outputs if built in outputs else outputs + [built]

    def get_output_mapping(self):
        mapping = super().get_output_mapping()
        if self.inplace:
            mapping[os.path.join(self.build_lib, PAUSE_BINARY)] = PAUSE_BINARY
        return mapping

    def get_source_files(self):
        # so that an sdist carries pause.c
        return super().get_source_files() + [PAUSE_SOURCE]


setup(
    cffi_modules=["minirun/libc/declarations.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtWithPause},
)
