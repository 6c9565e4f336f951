"""debias service (REST API); depends on the audit engine, never the other way round."""
