"""kinject: fine-tuning vs retrieval for knowledge injection (Ovadia et al., 2023), as a Snakemake pipeline."""

__version__ = "0.1.0"
