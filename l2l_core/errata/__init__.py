"""The thesis code's defects, each a hook into the general code (``defects``), and the chapter that re-checks
the thesis' claims with each defect on and off (``chapter``)."""
