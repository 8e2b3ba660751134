"""The simulator's compiled kernels: where numba caches them, and compiling ahead.

The phase solve and the record evaluation are compiled with numba (decision 0086;
``phase_kernel``, ``record_kernel``, ``closed_form``). numba's own cache checks only
the source file of the function it compiled, but the kernels inline functions from
other modules and freeze module constants (cell field rows, coefficient columns, the
phase grid) into the machine code: a change there would leave a stale kernel. So the
cache lives in a directory named by a digest of every module the kernels read; a
change to any of them compiles afresh. The directory is
``drivers/sim/__pycache__/numba-<digest>`` beside the sources, or, where that is not
writable (a read-only install), ``$XDG_CACHE_HOME/voltloop/numba-<digest>``
(``~/.cache``); ``NUMBA_CACHE_DIR``, if set, wins. ``make`` compiles the kernels once
after installing (:func:`compile_ahead`, about 20 s), so no simulation waits for it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

HERE = Path(__file__).parent
#: Modules whose code or constants end up in the compiled kernels.
KERNEL_SOURCES = (
    "closed_form.py", "phase_kernel.py", "record_kernel.py", "cell_model.py", "chemistry.py",
    "phases.py", "phase_end.py",
)  # fmt: skip


def kernel_digest() -> str:
    """Digest of :data:`KERNEL_SOURCES` (and of the record layout they write)."""
    from voltloop.drivers import records

    digest = hashlib.sha256()
    for name in KERNEL_SOURCES:
        digest.update((HERE / name).read_bytes())
    digest.update(Path(records.__file__).read_bytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    """Where the kernels are cached (see the module docstring); created."""
    name = f"numba-{kernel_digest()}"
    beside = HERE / "__pycache__" / name
    try:
        beside.mkdir(parents=True, exist_ok=True)
        if os.access(beside, os.W_OK):
            return beside
    except OSError:
        pass
    home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    user = home / "voltloop" / name
    user.mkdir(parents=True, exist_ok=True)
    return user


def configure_cache() -> None:
    """Point numba's cache at :func:`cache_dir` (before any kernel is defined)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return
    import numba

    if not numba.config.CACHE_DIR:
        numba.config.CACHE_DIR = str(cache_dir())


_warm = False


def warm_up() -> None:
    """Load (or compile) the kernels now, once per process: a simulated lab calls this
    when it is built, so that no instrument command waits for them (the first phase
    solve would otherwise pay ~0.5 s of loading, or the compilation)."""
    global _warm
    if _warm:
        return
    _warm = True
    compile_ahead()


def compile_ahead() -> None:
    """Compile (or load) every kernel for the argument types the simulator passes, by
    running one simulated cell for a few hours with records and a CV step."""
    from voltloop.drivers.sim.lab import SimulatedLab
    from voltloop.drivers.sim.reference_protocols import attia_protocol
    from voltloop.drivers.sim.virtual_lab import CellSpec

    lab = SimulatedLab(1, seed=0)
    lab.load_cell(0, CellSpec(cell_id="compile-ahead", seed=0))
    lab.start(0, attia_protocol(4.8, 5.2, 5.2, cycles=2, record_interval_s=60.0), "compile-ahead")
    lab.advance(4 * 3600.0)
