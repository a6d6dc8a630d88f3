"""Adapter sources (HuggingFace, S3, local): discovery, metadata, credentials and staging."""
