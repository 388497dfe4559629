#!/usr/bin/env bash
# Leave Pillow-SIMD as the installed PIL.
# matplotlib (and anything else) depends on `pillow`, which pip installs beside
# pillow-simd: both write the same PIL package, and whichever lands last wins.
# Remove both and reinstall the SIMD build alone, then check it (ANCHORS.md).
set -euo pipefail
PY=${1:-python}
"$PY" -m pip uninstall -q -y pillow pillow-simd
"$PY" -m pip install -q --no-deps -c constraints.txt pillow-simd
"$PY" - <<'PYEOF'
import PIL, sys
from PIL import features
if ".post" not in PIL.__version__:
    sys.exit(f"error: PIL {PIL.__version__} is not the Pillow-SIMD build")
if not features.check_feature("libjpeg_turbo"):
    sys.exit("error: Pillow-SIMD was built without libjpeg-turbo")
print(f"PIL is Pillow-SIMD {PIL.__version__} with libjpeg-turbo")
PYEOF
