"""The install leaves what the user chose: Pillow-SIMD as PIL, and galaxyprep without TensorFlow."""

from __future__ import annotations

import subprocess
import sys


def test_pil_is_pillow_simd_with_libjpeg_turbo():
    import PIL
    from PIL import features

    # Pillow-SIMD versions are Pillow's plus a .postN suffix; plain Pillow has none
    assert ".post" in PIL.__version__, f"PIL {PIL.__version__} is plain Pillow, not Pillow-SIMD"
    assert features.check_feature("libjpeg_turbo")


def test_galaxyprep_imports_without_tensorflow():
    code = ("import sys; import galaxyprep, galaxyprep.builder, galaxyprep.cli, galaxyprep.synth; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
