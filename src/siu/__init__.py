"""siu: Single Image Unlearning and MMUBench for multimodal LLMs."""

__version__ = "0.1.0"
