"""Training logs: JSON lines (``train.jsonl``, ``eval.jsonl``) and, optionally, TensorBoard scalars.

A run folder gets one JSON object per logged step in ``train.jsonl`` and one per evaluation in
``eval.jsonl``; with ``report_to=("jsonl", "tensorboard")`` every numeric field is also written as the
scalar ``train/<field>`` or ``eval/<field>`` under ``<run_dir>/tensorboard/`` (``tensorboardX``, from
``pip install "anyclip[train]"``)::

    with RunLog("logs/shapes", report_to=("jsonl", "tensorboard")) as run_log:
        run_log.log({"step": 10, "epoch": 0, "loss": 2.1, "lr": 1e-4, "logit_scale": 14.3})
        run_log.log({"step": 10, "epoch": 0, "shapes/shape/acc1": 0.61}, kind="eval")
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

REPORT_TO = ("jsonl", "tensorboard")
KINDS = ("train", "eval")
_INSTALL = 'pip install "anyclip[train]"'

log = logging.getLogger("anyclip.train")


def _summary_writer_class():
    try:
        from tensorboardX import SummaryWriter
    except ImportError as e:
        raise ImportError(f"--report-to tensorboard needs the tensorboardX package: {_INSTALL}") from e
    return SummaryWriter


def parse_report_to(value) -> tuple:
    """Check a ``--report-to`` value (``"jsonl"``, ``"tensorboard"``, comma-separated, or a sequence of them).

    JSON lines are always written, so ``"jsonl"`` is always part of the result. Raises ``ValueError`` for an
    unknown name and ``ImportError`` when TensorBoard is asked for but tensorboardX is not installed.

    Example:
        >>> parse_report_to("tensorboard")
        ('jsonl', 'tensorboard')
    """
    names = value.split(",") if isinstance(value, str) else list(value)
    names = [str(n).strip().lower() for n in names if str(n).strip()]
    unknown = [n for n in names if n not in REPORT_TO]
    if unknown:
        raise ValueError(f"--report-to: unknown destination(s) {', '.join(map(repr, unknown))} in {value!r}; "
                         f"choose from {', '.join(REPORT_TO)} (comma-separated)")
    if "tensorboard" in names:
        _summary_writer_class()
    return tuple(n for n in REPORT_TO if n == "jsonl" or n in names)


def _plain(key, value):
    """A JSON-ready Python value: numpy / jax / torch scalars become ``int`` / ``float`` / ``bool``."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    try:
        array = np.asarray(value)
    except (TypeError, RuntimeError):  # e.g. a torch tensor on a GPU
        array = np.asarray(value.item()) if callable(getattr(value, "item", None)) else np.asarray(None)
    if array.size == 1 and array.dtype.kind in "biuf":
        return array.reshape(()).item()
    raise TypeError(f"log field {key!r}: expected a number or string, got {type(value).__name__} {value!r:.80}")


def _last_byte(path):
    with open(path, "rb") as f:
        f.seek(-1, 2)
        return f.read(1)


class RunLog:
    """Append step records to ``<run_dir>/train.jsonl`` / ``eval.jsonl`` (and TensorBoard when asked).

    Files are opened in append mode, so a resumed run continues the same log; every line is flushed as it
    is written. A log that ends in a half-written line (a crash mid-write) gets a newline first, so the
    new records stay readable (:func:`read_log` skips the broken line).

    Example:
        >>> with RunLog(run_dir, report_to="jsonl,tensorboard") as run_log:  # doctest: +SKIP
        ...     run_log.log({"step": 1, "epoch": 0, "loss": 4.2})
    """

    def __init__(self, run_dir, report_to=("jsonl",)):
        self.run_dir = Path(run_dir)
        self.report_to = parse_report_to(report_to)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._files = {}
        self._writer = None
        if "tensorboard" in self.report_to:
            self._writer = _summary_writer_class()(logdir=str(self.run_dir / "tensorboard"))

    def path(self, kind: str = "train") -> Path:
        """The JSON-lines file of ``kind`` (``"train"`` or ``"eval"``).

        Example:
            >>> RunLog("logs/shapes").path("eval").name  # doctest: +SKIP
            'eval.jsonl'
        """
        if kind not in KINDS:
            raise ValueError(f"log kind must be one of {', '.join(KINDS)}, got {kind!r}")
        return self.run_dir / f"{kind}.jsonl"

    def _file(self, kind):
        if kind not in self._files:
            path = self.path(kind)
            ends_mid_line = path.exists() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
            self._files[kind] = f = open(path, "a", encoding="utf-8")
            if ends_mid_line:
                f.write("\n")
        return self._files[kind]

    def log(self, record: dict, kind: str = "train") -> dict:
        """Write one record (a dict with an integer ``"step"``); returns it with plain Python values.

        Example:
            >>> run_log.log({"step": 400, "epoch": 2, "shapes/shape/acc1": 0.97}, kind="eval")  # doctest: +SKIP
        """
        if self._files is None:
            raise ValueError(f"RunLog for {self.run_dir} is closed")
        record = {str(k): _plain(k, v) for k, v in record.items()}
        if not is_number(record.get("step")) or not isinstance(record["step"], int):
            raise ValueError(f"{kind} log record needs an integer 'step', got {record.get('step')!r}")
        f = self._file(kind)
        f.write(json.dumps(record) + "\n")
        f.flush()
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and is_number(value):
                    self._writer.add_scalar(f"{kind}/{key}", value, global_step=record["step"])
            self._writer.flush()
        return record

    def close(self) -> None:
        """Close the files and the TensorBoard writer (again is a no-op).

        Example:
            >>> run_log.close()  # doctest: +SKIP
        """
        for f in (self._files or {}).values():
            f.close()
        self._files = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_log(path) -> list:
    """Read a JSON-lines log; a line cut short by a crash mid-write is skipped with a warning.

    Example:
        >>> [r["loss"] for r in read_log("logs/shapes/train.jsonl")]  # doctest: +SKIP
        [4.1, 3.7, 3.2]
    """
    path = Path(path)
    records, broken = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            broken.append(number)
            continue
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object per line, got {type(record).__name__}")
        records.append(record)
    if broken and not records:
        raise ValueError(f"{path}: no line is a JSON object (line(s) {broken[:5]}); is it a JSON-lines log?")
    if broken:
        log.warning("%s: skipped %d unreadable line(s) %s (cut short by a crash mid-write?)", path, len(broken),
                    broken[:5])
    return records


def truncate_logs(run_dir, step: int) -> list:
    """Drop the records after ``step`` from ``train.jsonl`` and ``eval.jsonl`` of ``run_dir`` (atomically).

    A resumed run repeats the steps after its checkpoint; cutting them first leaves each step logged once.
    Lines cut short by a crash go too. Returns the files changed.

    Example:
        >>> truncate_logs("logs/shapes", 300)  # doctest: +SKIP
        [PosixPath('logs/shapes/train.jsonl')]
    """
    from ..atomic import atomic_write_text
    changed = []
    for kind in KINDS:
        path = Path(run_dir) / f"{kind}.jsonl"
        if not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
        if len(kept) != len(lines):
            atomic_write_text(path, "".join(line + "\n" for line in kept))
            changed.append(path)
    return changed


def _step_of(line: str):
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    step = record.get("step") if isinstance(record, dict) else None
    return step if is_number(step) else None


def is_number(value) -> bool:
    """True for an int or float that is not a bool (a field a plot or TensorBoard scalar can show).

    Example:
        >>> is_number(0.5), is_number(True), is_number("a")
        (True, False, False)
    """
    return isinstance(value, (int, float)) and not isinstance(value, bool)


__all__ = ["REPORT_TO", "RunLog", "is_number", "parse_report_to", "read_log", "truncate_logs"]
