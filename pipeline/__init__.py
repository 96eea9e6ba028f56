"""The pure clearance core: parsing, money, rules, the join state machine, decisions.

Its hot modules load from a compiled build when one made from exactly these sources is
installed (pipeline/compiled.py, scripts/build_native.py), else from the sources.
"""

from pipeline.compiled import search_path

__path__ = search_path(list(__path__))
