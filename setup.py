"""The one thing pyproject.toml cannot state stably: the C extension (setuptools' ext-modules table there is
experimental). Everything else about the package is in pyproject.toml."""

from setuptools import Extension, setup

setup(ext_modules=[
    # The centre-window JPEG decoder, on the system's libjpeg-turbo (whose headers Pillow-SIMD's build needs
    # too). Optional: without the headers the build falls back to simplejpeg's full-frame decode.
    # -ffp-contract=off: its resample must round as the numba kernel does, never through a fused multiply-add.
    Extension("galaxyprep._cropdecode", ["galaxyprep/_cropdecode.c"], libraries=["jpeg"], optional=True,
              extra_compile_args=["-ffp-contract=off"]),
])
