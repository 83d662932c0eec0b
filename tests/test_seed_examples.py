"""Every code example of the seed READMEs runs with anyclip, on JAX and on torch (issue 20, item 5).

Each example is a file in tests/seed_examples/, copied from its README (../shared/seeds/) with only the lines
marked ``# changed: <why>`` different: the import line, and a local copy where the original downloads something.
Each runs in its own process (``KERAS_BACKEND`` set, ``HF_HUB_OFFLINE=1``) in a folder that is also its ``HOME``,
laid out by tests/seed_workspace.py: random-init open_clip checkpoints in a local hub cache under the repositories
the examples name, the images they open, a generated CIFAR-100 in torchvision's format. The examples run two at a
time (one process each) while the tests wait for their own.

``XFAIL`` names, per example and backend, the piece anyclip still lacks; the marks are strict, so each one fails
once its piece lands and is then removed from the table.
"""

import difflib
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from seed_workspace import EXAMPLES, build_world, environment, workdir

SEEDS = Path(__file__).parents[1].parent / "shared" / "seeds"
BACKENDS = ("jax", "torch")


class Example:
    """One README example: its file, the README code block it copies, what its output must show."""

    def __init__(self, file, readme, block, shows="", cifar=None, slow=False):
        self.file, self.readme, self.block, self.shows, self.cifar, self.slow = file, readme, block, shows, cifar, slow


EXAMPLES_TABLE = (
    Example("openclip_quick_usage.py", "openclip-README.md", 0, "Label probs:"),
    Example("openclip_list_pretrained.pycon", "openclip-README.md", 1, "('ViT-B-32', 'laion2b_s34b_b79k')"),
    Example("openai_clip_usage.py", "openai-clip-README.md", 1, "Label probs:"),
    Example("openai_clip_zero_shot_cifar100.py", "openai-clip-README.md", 2, "Top predictions:", cifar="zero_shot"),
    Example("openai_clip_linear_probe.py", "openai-clip-README.md", 4, "Accuracy = ", cifar="linear_probe"),
    Example("tfclip_default_usage.py", "tfclip-README.md", 1, "Label probs:"),
    Example("tfclip_features.py", "tfclip-README.md", 2, "Label probs:"),
    Example("open_clip_jax_inference.py", "open-clip-jax-README.md", 0, "[["),
    Example("open_clip_jax_components.py", "open-clip-jax-README.md", 1, "[["),
    # 30 epochs of ViT-B-32 at batch 128 on CPU: only in the full sweep.
    Example("open_clip_jax_train_single_worker.sh", "open-clip-jax-README.md", 2, slow=True),
    Example("open_clip_jax_list_models.pycon", "open-clip-jax-README.md", 4, "'vit-base-patch32'"),
)
# Not run: OpenAI's `conda install` / `pip install` lines and tfclip's `pip install tfclip` (installation), and
# open_clip_jax's multi-worker TPU recipe (gcloud commands creating a TPU pod slice).

_TFCLIP_NUMPY = "tfclip face: the model's output has no working .numpy() (issue 20 item 4)"
XFAIL = {
    # Code written for one framework: by the layout rule (README "Using it") the drop-in gives that backend's arrays,
    # so torch code (torch.no_grad, tensor.unsqueeze / .norm(dim=) / .softmax(dim=)) runs on the torch backend
    # and JAX code (jax.jit over the model's variables) on the JAX backend. The strict marks check that this holds.
    ("openclip_quick_usage.py", "jax"): "torch code (preprocess(...).unsqueeze(0), .norm(dim=)): on JAX the "
                                        "drop-in gives numpy / JAX arrays; runs on the torch backend",
    ("open_clip_jax_components.py", "torch"): "JAX code (jax.jit over the variables): on torch the variables are "
                                              "torch parameters; runs on the JAX backend",
    # Not anyclip's: `KERAS_BACKEND=torch python -c "import tensorflow"` alone segfaults here (TensorFlow 2.21 imports
    # Keras, whose torch backend imports triton 3.8 after TensorFlow's LLVM). The example's first line is that
    # import; with anyclip imported first its guard keeps torch alive (tests/test_backend_choice.py).
    ("tfclip_features.py", "torch"): "blocked outside anyclip: `import tensorflow` with KERAS_BACKEND=torch "
                                     "segfaults in triton's C extension",
}
BY_FILE = {example.file: example for example in EXAMPLES_TABLE}


def _params():
    for example in EXAMPLES_TABLE:
        for backend in BACKENDS:
            marks = [pytest.mark.slow] if example.slow else []
            if (example.file, backend) in XFAIL:
                marks.append(pytest.mark.xfail(strict=True, reason=XFAIL[example.file, backend]))
            yield pytest.param(example.file, backend, marks=marks, id=f"{example.file}-{backend}")


def _command(path: Path) -> list[str]:
    if path.suffix == ".pycon":
        return [sys.executable, str(EXAMPLES / "run_pycon.py"), str(path)]
    if path.suffix == ".sh":
        return ["bash", str(path)]
    return [sys.executable, str(path)]


class _Runs:
    """The selected examples, started two at a time in the session's order; ``result`` waits for one."""

    def __init__(self, world: Path, wanted: list[tuple[str, str]]):
        # A training example (slow tier) needs ~13-16 GiB and ~20 min on 2 cores: those run one at a time.
        workers = 1 if any(BY_FILE[file].slow for file, _ in wanted) else 2
        self.world, self.pool = world, ThreadPoolExecutor(max_workers=workers)
        self.futures = {key: self.pool.submit(self._run, *key) for key in wanted}

    def _run(self, file: str, backend: str):
        folder = workdir(self.world, self.world / "runs" / f"{file}-{backend}", BY_FILE[file].cifar)
        start = time.perf_counter()
        run = subprocess.run(_command(EXAMPLES / file), cwd=folder, env=environment(self.world, folder, backend),
                             capture_output=True, text=True, timeout=3600 if BY_FILE[file].slow else 600)
        return run, time.perf_counter() - start

    def result(self, file: str, backend: str):
        if (file, backend) not in self.futures:  # not selected at session start (e.g. a re-run)
            self.futures[file, backend] = self.pool.submit(self._run, file, backend)
        return self.futures[file, backend].result()


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    wanted = [(item.callspec.params["file"], item.callspec.params["backend"]) for item in request.session.items
              if item.module is sys.modules[__name__] and hasattr(item, "callspec")
              and "backend" in item.callspec.params]
    world = build_world(tmp_path_factory.mktemp("seed-world"))
    started = _Runs(world, wanted)
    yield started
    started.pool.shutdown(cancel_futures=True)


@pytest.mark.parametrize("file, backend", list(_params()))
def test_seed_example_runs(runs, file, backend):
    run, seconds = runs.result(file, backend)
    detail = f"{file} on {backend} ({seconds:.0f} s):\nstdout:\n{run.stdout[-2000:]}\nstderr:\n{run.stderr[-4000:]}"
    assert run.returncode == 0, detail
    assert BY_FILE[file].shows in run.stdout, detail


ORIGINALS = EXAMPLES / "originals"  # each example's README code block as the README has it (<file>.txt)


def _readme_block(readme: str, index: int) -> list[str]:
    blocks = re.findall(r"```[a-z]*\n(.*?)```", (SEEDS / readme).read_text(), re.S)
    return blocks[index].splitlines()


@pytest.mark.parametrize("file", [example.file for example in EXAMPLES_TABLE])
def test_seed_example_is_the_readme_code_with_marked_changes(file):
    original = (ORIGINALS / f"{file}.txt").read_text().splitlines()
    ours = (EXAMPLES / file).read_text().splitlines()
    unmarked = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, original, ours, autojunk=False).get_opcodes():
        if tag == "delete":
            unmarked += [f"dropped: {line}" for line in original[i1:i2]]
        elif tag in ("insert", "replace"):
            unmarked += [f"new: {line}" for line in ours[j1:j2] if "# changed: " not in line]
    assert not unmarked, f"{file} differs from its README code (originals/{file}.txt) on lines without " \
        "'# changed: <why>':\n" + "\n".join(unmarked)


@pytest.mark.skipif(not SEEDS.is_dir(), reason=f"the seed READMEs are not at {SEEDS} (outside this repository)")
@pytest.mark.parametrize("file", [example.file for example in EXAMPLES_TABLE])
def test_kept_originals_are_the_seed_readme_code(file):
    example = BY_FILE[file]
    assert (ORIGINALS / f"{file}.txt").read_text().splitlines() == _readme_block(example.readme, example.block)
