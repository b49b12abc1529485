"""The tutorial notebooks: ``NN_name.py`` (jupytext percent format) is each one's source, ``execute.py`` runs them."""
