"""Adopting vectors embedded elsewhere (``embedops adopt``): a re-embedded sample must match, then they are kept.

>>> from embedops.adopt import AdoptInput, adopt                                   # doctest: +SKIP
>>> adopt(ws, "legacy", AdoptInput("sql", "embedding", {"url_env": "APP_DB_URL", "table": "docs_embeddings",
...       "id_column": "doc_id", "text": "content"}), embedder="minilm-l6")      # doctest: +SKIP
"""

from embedops.adopt.check import DEFAULT_MIN_COSINE, DEFAULT_SAMPLE, SampleCheck
from embedops.adopt.run import AdoptInput, AdoptResult, adopt

__all__ = ["DEFAULT_MIN_COSINE", "DEFAULT_SAMPLE", "AdoptInput", "AdoptResult", "SampleCheck", "adopt"]
