"""Knowledge-graph recommenders: a dataset's KG (or any triple file) joined to the interactions.

- `triples`: read RecBole `.kg`/`.link` files and plain CSV/TSV triple files, errors naming
  file, line and field; readable relation names.
- `graph`: the KG aligned with the catalogue (per-relation item x entity incidence) and the
  user-item-entity adjacency built from the training interactions only.
- `ppr`: personalised PageRank from a user's history items (`kg-ppr`).
- `paths`: meta-path counts per relation, weights fitted on the validation items (`kg-path`).
- `explain`: a score's highest-scoring paths in words (`llmrec explain`).
"""
