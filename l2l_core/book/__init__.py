"""The book: each chapter's experiment (settings, profiles, steps), its figures and tables, the chapter graph
and ``make reproduce``, and the bench's scaling computation."""
