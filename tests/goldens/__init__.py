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
        self.measured = []  # one dict per float comparison made by assert_close

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

    def assert_close(self, key, got, *tol_names, ref=None, scale_atol=0.0):
        """Compare ``got`` with array ``key`` (shape, dtype kind, values); record the max error.

        Integer/bool arrays must be equal. Float arrays must satisfy
        ``|got - ref| <= atol + rtol * |ref|`` with the manifest's ``(rtol, atol)`` for ``key``
        (see :meth:`tol`). ``scale_atol > 0`` makes the comparison scale-relative: atol becomes
        ``max(atol, scale_atol * max|ref|)``. Every float comparison is recorded in
        ``self.measured`` (see :meth:`report`).
        """
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
        scale = float(np.nanmax(np.abs(ref64), initial=0.0)) if ref64.size else 0.0
        atol = max(t["atol"], scale_atol * scale)
        err = np.abs(got - ref64)
        limit = t["rtol"] * np.abs(ref64)
        ok = np.isclose(got, ref64, rtol=t["rtol"], atol=atol, equal_nan=True)
        manifest_ok = np.isclose(got, ref64, rtol=t["rtol"], atol=t["atol"], equal_nan=True)
        self.measured.append(dict(
            key=key, size=int(ref.size), max_abs_err=float(np.nanmax(err, initial=0.0)), max_abs_ref=scale,
            rtol=t["rtol"], atol=t["atol"], atol_used=atol,
            atol_needed=float(np.nanmax(err - limit, initial=0.0)),  # smallest atol that passes with rtol
            outside_manifest=int((~manifest_ok).sum())))
        if not ok.all():
            i = np.unravel_index(np.nanargmax(np.where(ok, 0, err)), ref.shape)
            raise AssertionError(
                f"{self.name}:{key}: {int((~ok).sum())}/{ok.size} entries outside rtol={t['rtol']} "
                f"atol={atol:.3g}{' (scale-relative)' if atol > t['atol'] else ''}; worst at {i}: "
                f"got {got[i]!r}, expected {ref64[i]!r} (max |diff| {np.nanmax(err):.3g})")

    def report(self) -> str:
        """Table of the recorded float comparisons: max |diff|, max |expected|, the manifest's
        tolerance, the atol used (larger only for scale-relative comparisons), the smallest atol
        that would pass with the manifest rtol, and how many entries the manifest tolerance misses."""
        lines = [f"golden case {self.name}: {len(self.measured)} float comparisons",
                 f"{'key':48s} {'max|diff|':>9s} {'max|ref|':>9s} {'rtol':>6s} {'atol':>7s} "
                 f"{'atol used':>9s} {'needed':>9s} {'outside manifest tol':>20s}"]
        for m in self.measured:
            lines.append(f"{m['key']:48s} {m['max_abs_err']:9.3g} {m['max_abs_ref']:9.3g} {m['rtol']:6.0e} "
                         f"{m['atol']:7.0e} {m['atol_used']:9.3g} {m['atol_needed']:9.3g} "
                         f"{m['outside_manifest']:>9d}/{m['size']:<10d}")
        return "\n".join(lines)
