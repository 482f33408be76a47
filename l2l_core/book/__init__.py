"""Presentation only: what the book shows of the experiments' results (``views``: figures and display tables;
``pages``: chapter pages and claims tables; ``report``: the conclusions and reproduction pages; ``plotting``, ``tables``)."""
