import os
import sys

# The shim is imported from the source tree, as bridge runs it (PYTHONPATH).
PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if PYTHON_DIR not in sys.path:
    sys.path.insert(0, PYTHON_DIR)
