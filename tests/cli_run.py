"""Running ``anyclip`` in-process for tests: the exit status and what it printed on stderr."""

from anyclip.cli import main


def run_cli(argv, capsys=None) -> tuple[int, str]:
    """``(exit status, stderr)`` of ``anyclip argv`` (paths are turned into text); a traceback fails the test."""
    if capsys is not None:
        capsys.readouterr()
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err if capsys is not None else ""
    assert "Traceback" not in err, err
    return code, err
