"""Content-based recommenders: items as vectors of their text, users as interest over their history.

Each item is rendered through an item template (`templates/item/text_v1.j2`: title, year,
genres and the items file's other text fields) and encoded by a language model: the configured
causal LM (`content-lm`, mean-pooled or last-token hidden state) or a sentence encoder
(`content-st`, all-MiniLM-L6-v2 through sentence-transformers). A user's interest is pooled over
the vectors of their history (mean, recency-weighted, or a learned target attention as in DIN),
so an item no one has interacted with is scored from its text alone: the cold-start case that
collaborative models cannot serve.

- `text`: the item template and the texts it renders.
- `encoders`: the causal-LM and sentence-transformers encoders.
- `cache`: vectors on disk, keyed by model, adapter, template and texts (a second run encodes nothing).
- `interest`: mean and recency-weighted interest vectors (cosine scores).
- `attention`: the learned target-attention interest model, trained with BPR on frozen vectors.
- `index`: full-catalogue retrieval through a faiss inner-product index.
- `recommender`: `content-lm` and `content-st` behind the baselines' `Recommender` protocol.
"""
