"""The LoraAdapter API: pydantic models of the CRD spec and status, and the CRD schema built from them."""
