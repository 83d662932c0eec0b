"""Run a function of the test package under another Keras backend, in a subprocess.

Keras fixes its backend once per process, so tests that must also check torch or TensorFlow start
a fresh interpreter with ``KERAS_BACKEND`` set::

    from backend_runner import start_in_backend
    job = start_in_backend("torch", "test_losses:backend_worker", {"x": x}, {"cases": [...]})
    ...                                  # the subprocess runs while this process does other work
    out = job.result(timeout=300)        # dict of numpy arrays returned by the worker

The target ``"module:function"`` is imported from ``tests/`` and called as ``function(arrays, params)``
with ``arrays`` a dict of numpy arrays and ``params`` a JSON-able object; it returns a dict of
arrays. Arrays travel as ``.npz`` files; a worker exception is re-raised here as ``RuntimeError``
with its traceback. Command line (used by the subprocess itself)::

    KERAS_BACKEND=torch python tests/backend_runner.py module:function IN.npz PARAMS.json OUT.npz
"""

import importlib
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

TESTS_DIR = Path(__file__).resolve().parent


class BackendJob:
    """A worker running under one backend; ``result()`` waits for it and returns its arrays."""

    def __init__(self, backend, target, arrays, params=None, env=None):
        self.backend, self.target = backend, target
        self._dir = tempfile.TemporaryDirectory(prefix=f"anyclip-{backend}-")
        root = Path(self._dir.name)
        self._in, self._params, self._out = root / "in.npz", root / "params.json", root / "out.npz"
        self._err, self._log = root / "error.txt", root / "log.txt"
        np.savez(self._in, **arrays)
        self._params.write_text(json.dumps(params))
        env = {**os.environ, **(env or {}), "KERAS_BACKEND": backend, "HF_HUB_OFFLINE": "1",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))}
        with open(self._log, "w") as log:
            self._proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), target, str(self._in), str(self._params),
                 str(self._out)], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(TESTS_DIR))
        self._result = None

    def result(self, timeout=600):
        if self._result is None:
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise RuntimeError(f"{self.backend} worker {self.target} timed out after {timeout}s")
            if self._err.exists():
                raise RuntimeError(f"{self.backend} worker {self.target} failed:\n{self._err.read_text()}")
            if self._proc.returncode != 0 or not self._out.exists():
                raise RuntimeError(f"{self.backend} worker {self.target} exited with {self._proc.returncode}:\n"
                                   + self._log.read_text()[-4000:])
            with np.load(self._out) as data:
                self._result = {k: data[k] for k in data.files}
            self._dir.cleanup()
        return self._result

    def kill(self):
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()


def start_in_backend(backend, target, arrays, params=None, env=None):
    """Start ``target(arrays, params)`` under ``backend`` (``env``: extra environment) and return a :class:`BackendJob`."""
    return BackendJob(backend, target, arrays, params, env)


def run_in_backend(backend, target, arrays, params=None, timeout=600):
    """Blocking form of :func:`start_in_backend`: the worker's dict of arrays."""
    return start_in_backend(backend, target, arrays, params).result(timeout)


def _main(target, in_path, params_path, out_path):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        module_name, func_name = target.split(":")
        func = getattr(importlib.import_module(module_name), func_name)
        with np.load(in_path) as data:
            arrays = {k: data[k] for k in data.files}
        out = func(arrays, json.loads(Path(params_path).read_text()))
        tmp = Path(out_path).with_suffix(".tmp.npz")
        np.savez(tmp, **{k: np.asarray(v) for k, v in out.items()})
        os.replace(tmp, out_path)
    except BaseException:
        Path(out_path).with_name("error.txt").write_text(traceback.format_exc())
        raise


if __name__ == "__main__":
    _main(*sys.argv[1:5])
