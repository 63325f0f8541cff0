"""Helpers shared by the golden-case checkers (``tests/goldens/<case>.py``).

A checker is a module with ``check(g: Golden)``; it runs our implementation on
``g['in/...']`` / ``g.state_dict()`` and compares with ``g.assert_close``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

DEFAULT_TOL = {"rtol": 1e-4, "atol": 1e-5}


class Golden:
    """One case of a golden folder: its manifest entry and its arrays."""

    def __init__(self, folder: Path, name: str, case: dict, manifest: dict):
        self.folder, self.name, self.case, self.manifest = folder, name, case, manifest
        self.arrays = np.load(folder / case["file"])
        self.config = case.get("config", {})

    @classmethod
    def open(cls, folder, name):
        folder = Path(folder)
        manifest = json.loads((folder / "MANIFEST.json").read_text())
        return cls(folder, name, manifest["cases"][name], manifest)

    def __getitem__(self, key):
        return self.arrays[key]

    def __contains__(self, key):
        return key in self.arrays.files

    def keys(self, prefix=""):
        return [k for k in self.arrays.files if k.startswith(prefix)]

    def state_dict(self, prefix=""):
        """``{official_key: ndarray}`` from the ``w/`` arrays, optionally under ``prefix``."""
        sd = {k[2:]: self.arrays[k] for k in self.keys("w/")}
        if prefix:
            sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        return sd

    def tol(self, key, *names):
        """Tolerance for ``key``: the array's own, else the first of the case's named
        tolerance entries that exists, else the manifest default."""
        own = self.case.get("arrays", {}).get(key, {}).get("tolerance")
        if isinstance(own, dict) and "rtol" in own:
            return own
        tols = self.case.get("tolerances", {})
        for n in names + ("float32",):
            t = tols.get(n)
            if isinstance(t, dict) and "rtol" in t:
                return t
        t = self.manifest.get("default_tolerances", {}).get("float32")
        return t if isinstance(t, dict) else DEFAULT_TOL

    def assert_close(self, key, got, *tol_names, ref=None):
        """Compare ``got`` with array ``key`` (shape, dtype kind, values)."""
        ref = self.arrays[key] if ref is None else ref
        got = np.asarray(got.numpy() if hasattr(got, "numpy") else got)
        assert got.shape == ref.shape, f"{self.name}:{key}: shape {got.shape} != expected {ref.shape}"
        if ref.dtype.kind in "biu":
            bad = np.flatnonzero(got.reshape(-1) != ref.reshape(-1))
            assert bad.size == 0, (f"{self.name}:{key}: {bad.size}/{ref.size} entries differ "
                                   f"(first at flat index {bad[:5]}: got {got.reshape(-1)[bad[:5]]}, "
                                   f"expected {ref.reshape(-1)[bad[:5]]})")
            return
        t = self.tol(key, *tol_names)
        got = got.astype(np.float64)
        ref64 = ref.astype(np.float64)
        ok = np.isclose(got, ref64, rtol=t["rtol"], atol=t["atol"], equal_nan=True)
        if not ok.all():
            err = np.abs(got - ref64)
            i = np.unravel_index(np.nanargmax(np.where(ok, 0, err)), ref.shape)
            raise AssertionError(
                f"{self.name}:{key}: {int((~ok).sum())}/{ok.size} entries outside rtol={t['rtol']} "
                f"atol={t['atol']}; worst at {i}: got {got[i]!r}, expected {ref64[i]!r} "
                f"(max |diff| {np.nanmax(err):.3g})")
