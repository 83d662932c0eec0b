"""Run anyclip on parity cases under one Keras backend (a subprocess of the test session).

Usage: KERAS_BACKEND=torch python tests/backend_worker.py CASE_FOLDER...
       KERAS_BACKEND=torch python tests/backend_worker.py - < folders.txt   (one folder per line, as they come)
Writes ``CASE_FOLDER/out_<backend>.npz`` (or ``error_<backend>.txt``) for each case.
"""

import os
import sys
import traceback
from pathlib import Path

import numpy as np


def main(folders):
    import keras

    import anyclip
    from reference import release_memory
    backend = keras.backend.backend()
    for folder in map(Path, folders):
        try:
            model = anyclip.create_model(f"local-dir:{folder}")
            case = np.load(folder / "case.npz")
            image = keras.ops.convert_to_numpy(model.encode_image(case["images"], normalize=True))
            text = keras.ops.convert_to_numpy(model.encode_text(case["tokens"], normalize=True))
            tmp = folder / f"out_{backend}.tmp.npz"
            np.savez(tmp, image=image, text=text,
                     logit_scale=float(keras.ops.convert_to_numpy(keras.ops.exp(model.logit_scale))))
            os.replace(tmp, folder / f"out_{backend}.npz")
        except Exception:
            (folder / f"error_{backend}.txt").write_text(traceback.format_exc())
        finally:
            keras.backend.clear_session()
            release_memory()
        print(f"done {folder.name}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = sys.argv[1:]
    main((line.strip() for line in sys.stdin if line.strip()) if args == ["-"] else args)
