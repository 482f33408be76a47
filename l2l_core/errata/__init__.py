"""The thesis code's defects, each a hook into the general code (``defects``); the chapter that re-checks the
thesis' claims with each defect on and off is an experiment like the others (``experiments.errata``)."""
