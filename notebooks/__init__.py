"""The tutorial notebooks: ``build.py`` writes them from reviewable sources, ``execute.py`` runs them."""
