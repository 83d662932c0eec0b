"""Run anyclip on parity cases under one Keras backend (a subprocess of the test session).

Usage: KERAS_BACKEND=torch python tests/backend_worker.py CASE_FOLDER...
       KERAS_BACKEND=torch python tests/backend_worker.py - < folders.txt   (one folder per line, as they come)
Writes ``CASE_FOLDER/out_<backend>.npz`` (or ``error_<backend>.txt``) for each case.
"""

import os
import sys
import time
import traceback
from pathlib import Path

import numpy as np


def main(folders):
    import keras
    from reference import encode_case, release_memory
    backend = keras.backend.backend()
    for folder in map(Path, folders):
        start = time.perf_counter()
        try:
            tmp = folder / f"out_{backend}.tmp.npz"
            np.savez(tmp, **encode_case(folder))
            os.replace(tmp, folder / f"out_{backend}.npz")
        except Exception:
            (folder / f"error_{backend}.txt").write_text(traceback.format_exc())
        finally:
            release_memory()
        print(f"done {folder.name} in {time.perf_counter() - start:.1f}s", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = sys.argv[1:]
    main((line.strip() for line in sys.stdin if line.strip()) if args == ["-"] else args)
