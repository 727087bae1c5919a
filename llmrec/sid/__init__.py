"""Semantic IDs: each item as a short code of a few tokens, learned from item vectors.

`codes.py` assigns the codes by residual quantisation (RQ-KMeans, as in TIGER and GRID: k-means on
the vectors, then on what the first level leaves, and so on) plus a last level that makes every
code unique; the codes become new tokens of the LM (`<a_12><b_3><c_40><d_0>`), which a `sid`
template shows for history items and scores (or generates) for the next item.
"""
