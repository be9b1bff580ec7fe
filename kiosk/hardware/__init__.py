"""Hardware behind small interfaces, with fakes shipped in the package (DESIGN.md s6).

Nothing here touches hardware at import time; each real backend is imported lazily
by its factory, so the package imports on any laptop or CI machine.
"""
