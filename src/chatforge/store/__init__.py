"""The conversation and feedback store (one SQLite file, CHATFORGE_HOME/chatforge.db unless --store moves it).

It is the one contract between serving, the terminal chat, feedback export and training: no other module reads
or writes its tables; they call these functions.

    Store(path)             open (create, migrate); a schema newer than this code is a clear error
    .register_model(...)    -> model id (name, path, adapter + content fingerprint)
    .log_completion(...)    keep one exchange (keyed by its chatcmpl- id)
    .add_rating / add_correction / add_pair / new_battle / add_vote   feedback, validated (StoreError)
    .list_feedback(...)     records, paged
    export.build(...)       DPO / KTO / SFT rows from the feedback, with duplicates and contradictions reported
"""

from chatforge.store.db import RATINGS, VOTES, Store, StoreError, default_path

__all__ = ["RATINGS", "VOTES", "Store", "StoreError", "default_path"]
