"""The network experiments of both papers (entry points ``python -m deep.<experiment>``).

Apart from the library (``deep.layers``, ``deep.models``, ``deep.losses``, ``deep.attacks``,
``deep.certify``, ``deep.methods``, ``deep.trainer``): each module here is one experiment, with a
config, a run function that checkpoints and resumes, and a thin command line.
"""
