"""Sub-commands of ``unidet``; see :mod:`unidetector.cli`."""
