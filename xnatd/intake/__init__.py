"""The intake (SPEC section 3): one incoming file from any door (C-STORE, import,
inbox, HTTP) checked, routed, site-anonymized and handed to the durable write."""
