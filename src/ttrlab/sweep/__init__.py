"""Sweeps: a YAML spec expands into runs, an executor (inline | local process pool | Ray) runs
them, and a results database (SQLAlchemy; SQLite by default) keeps every finished run once.

    from ttrlab.sweep import run_sweep
    summary = run_sweep("specs/cpu/main.yaml", "results.sqlite", executor="local", workers=2)

The names below load on first use, so importing one module of the package (a spec, the store)
does not import the others.
"""
_PUBLIC = {
    "run_sweep": "ttrlab.sweep.runner",
    "plan": "ttrlab.sweep.runner",
    "load_spec": "ttrlab.sweep.spec",
    "SweepSpec": "ttrlab.sweep.spec",
    "PlannedRun": "ttrlab.sweep.spec",
    "Resources": "ttrlab.sweep.spec",
    "ResultStore": "ttrlab.sweep.store",
    "database_url": "ttrlab.sweep.store",
}


def __getattr__(name: str):
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'ttrlab.sweep' has no attribute {name!r}")


__all__ = list(_PUBLIC)
