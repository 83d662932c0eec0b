"""Run a README's interactive-session example (``>>>`` / ``...`` lines) as the Python REPL would.

Each statement goes to :class:`code.InteractiveConsole`, which prints the value of an expression statement as the
REPL does; the README's printed output lines are not compared. A statement that raises makes the run exit 1.

Example:
    python run_pycon.py openclip_list_pretrained.pycon
"""

import code
import sys


class _Console(code.InteractiveConsole):
    failed = False

    def showtraceback(self):
        self.failed = True
        super().showtraceback()

    def showsyntaxerror(self, filename=None, **kwargs):
        self.failed = True
        super().showsyntaxerror(filename, **kwargs)


def main(path: str) -> int:
    console = _Console()
    with open(path) as f:
        for line in f:
            if line.startswith((">>> ", "... ")) or line.rstrip() in (">>>", "..."):
                console.push(line[4:].rstrip("\n"))
                if console.failed:
                    return 1
    console.push("")  # end a pending block
    return 1 if console.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
