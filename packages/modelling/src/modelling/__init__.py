"""modelling stage."""
