"""How the package runs: jobs here or on Dask (``jobs``), the process tricks behind one switch (``process``),
memory (``memory``), ``make reproduce`` (``reproduce``, ``notebooks``, ``terminal``) and its scaling estimate
(``scaling``)."""
