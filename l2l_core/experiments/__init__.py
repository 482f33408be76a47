"""The science of each chapter: its settings (``settings``), the chapter registry (``registry``), its task families
and claims (``setups``), the experiment protocol (``protocol``), LSTM training and reuse (``lstms``, ``reuse``), the
errata chapter (``errata``), long horizons, the drop-in demo, the verdict tables and the reference-run driver."""
