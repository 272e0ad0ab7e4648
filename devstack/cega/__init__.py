"""Central EGA stand-in: sends trigger messages, answers ``files.verified`` with accession ids.

Written independently of ``include/ega`` (the node's side), so that a bug on one side cannot hide
in a helper shared with the other. See ``python -m devstack.cega --help``.
"""
