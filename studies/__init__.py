"""Study scripts, one per question: ``studies/NN_topic.py``.

Installed as the package ``mlpsim.studies`` so that ``mlpsim study NAME`` finds
them from any working directory; each also runs as a script.
"""
