"""Reference layers, losses and masks ("stand-ins") that a test of one part puts in place of the student's others.

A test of one layer (say Block) should not depend on the student's other layers (say Attention), so that a bug
costs points once: the hidden test asks for a stand-in built only from torch / torchvision / transformers. They are
references, so they stay with the grader: this package is outside the worker's view (autograder/sandbox/ is all
of the grader it sees). The grader builds each stand-in a request names, runs it when the worker calls it, and the
worker holds only a shell with its parameters (autograder/kit/stand_ins/remote.py, autograder/sandbox/remote.py).
The hidden tests import the same classes to compute their references.

One module per assignment (vit.py, rnn.py, transformer.py, seq2seq.py, bert.py, captioning.py; every module of this
package is imported, so a new one needs no list) registers its stand-ins by name with `@register("name")`. The
drivers that must run in the worker (they call the student's code) are in autograder/sandbox/harness/.
"""
from __future__ import annotations

from types import ModuleType

from autograder.sandbox.harness import Registry, import_every_module

STAND_INS = Registry("stand-in")
register, lookup = STAND_INS.register, STAND_INS.lookup

MODULES: tuple[ModuleType, ...] = import_every_module(__name__, __path__, skip=("remote",))
